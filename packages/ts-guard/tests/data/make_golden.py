"""Generate ``golden_rewards.jsonl``: guard outputs scored by the *released* ToolSafe reward functions.

Run once, by hand, with the two released files checked out from github.com/MurrayTom/ToolSafe
(history before commit fafcd8cc, ``TS-Guard/verl-main/verl/utils/reward_score/agentsafety_v2{,_uniform}.py``)::

    python make_golden.py /path/to/agentsafety_v2_uniform.py /path/to/agentsafety_v2.py golden_rewards.jsonl

The released code is imported from the given paths at generation time only; it is not part of this project.
The completions are built from a fixed seed, so the table is reproducible.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import sys

TAGS = ("Malicious_User_Request", "Being_Attacked", "Harmfulness_Rating")
CLOSINGS = {"bs": "<\\{t}>", "bs2": "<\\\\{t}>", "slash": "</{t}>"}


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tag(tag: str, value: str, closing: str, case: str = "orig") -> str:
    t = {"orig": tag, "lower": tag.lower(), "upper": tag.upper()}[case]
    return f"<{t}>{value}" + CLOSINGS[closing].format(t=t)


def completions(rng: random.Random) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    # 1. every value combination x closing form (3 x 2 x 2 x 3 = 36 per... ) with a think block
    for closing, mur, pi, rating in itertools.product(
        CLOSINGS, ("yes", "no"), ("yes", "no"), ("0.0", "0.5", "1.0")
    ):
        body = "\n".join(
            [
                _tag(TAGS[0], mur, closing),
                _tag(TAGS[1], pi, closing),
                _tag(TAGS[2], rating, closing),
            ]
        )
        out.append((f"closing={closing}", f"<think>The call sends data.</think>\n{body}"))
    # 2. bad rating literals
    for closing, lit in itertools.product(
        ("bs", "slash"),
        ("0.75", "1", "0", "1.00", "0.50", "high", " 0.5 ", "0.", ".5", "-1.0", "0.0.0", ""),
    ):
        body = (
            _tag(TAGS[0], "no", closing)
            + _tag(TAGS[1], "yes", closing)
            + _tag(TAGS[2], lit, closing)
        )
        out.append((f"bad_literal={lit!r}", body))
    # 3. bad yes/no values and casing of values / tags
    for closing, v, case in itertools.product(
        ("bs", "slash"), ("Yes", "NO", "true", "y", " yes ", "yes."), ("orig", "lower", "upper")
    ):
        body = (
            _tag(TAGS[0], v, closing, case)
            + _tag(TAGS[1], "no", closing, case)
            + _tag(TAGS[2], "0.0", closing, case)
        )
        out.append((f"value={v!r},case={case}", body))
    # 4. missing tags
    for closing, drop in itertools.product(("bs", "slash"), range(3)):
        parts = [_tag(t, v, closing) for t, v in zip(TAGS, ("yes", "no", "1.0"), strict=False)]
        del parts[drop]
        out.append((f"missing={TAGS[drop]}", "\n".join(parts)))
    # 5. duplicates (first valid occurrence decides in the released code) and mixed closings
    for _ in range(60):
        parts = []
        for t in TAGS:
            vals = ["yes", "no"] if t != TAGS[2] else ["0.0", "0.5", "1.0", "0.7"]
            for _k in range(rng.randint(1, 3)):
                parts.append(
                    _tag(
                        t,
                        rng.choice(vals),
                        rng.choice(list(CLOSINGS)),
                        rng.choice(["orig", "lower", "upper"]),
                    )
                )
        rng.shuffle(parts)
        out.append(("duplicates/mixed", rng.choice(["", "Reasoning...\n"]) + "\n".join(parts)))
    # 6. whitespace / noise
    for closing in ("bs", "slash"):
        out.append(
            (
                "whitespace",
                f"<{TAGS[0]}>\n yes \n<\\{TAGS[0]}>".replace(
                    "<\\", "</" if closing == "slash" else "<\\"
                )
                + _tag(TAGS[1], "\tno\t", closing)
                + _tag(TAGS[2], "\n0.5\n", closing),
            )
        )
        out.append(
            (
                "spaces-in-tag",
                f"< {TAGS[0]}>yes<\\{TAGS[0]}>"
                + _tag(TAGS[1], "no", closing)
                + _tag(TAGS[2], "0.5", closing),
            )
        )
        out.append(("empty", ""))
        out.append(("plain", "I think this is unsafe."))
    return out


def main(uniform_path: str, v2_path: str, out_path: str, seed: int = 0) -> None:
    uniform, v2 = _load(uniform_path, "released_uniform"), _load(v2_path, "released_v2")
    rng = random.Random(seed)
    rows = []
    gts = [
        {"Malicious_User_Request": m, "Prompt_Injection": p, "Harmfulness_Rating": r}
        for m, p, r in itertools.product((True, False), (True, False), (0.0, 0.5, 1.0))
    ]
    for _i, (category, text) in enumerate(completions(rng)):
        for gt in rng.sample(gts, 2):
            rows.append(
                {
                    "id": len(rows),
                    "category": category,
                    "completion": text,
                    "ground_truth": gt,
                    "reward_uniform": uniform.compute_score("agentsafety", text, gt),
                    "reward_040402": v2.compute_score("agentsafety", text, gt),
                }
            )
    with open(out_path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
