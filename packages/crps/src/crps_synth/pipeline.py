"""The resumable pipeline: JSONL stages ``explore → pair → critique → synthesize → export``.

Each stage reads the previous stage's JSONL and appends **one row per problem** to its own output,
flushed as it goes. Rerunning a stage skips the problem ids already in its output, so a killed run
resumes where it stopped; a half-written last line (a kill mid-write) is cut off first. Everything
random is seeded per problem id (never by position), so a resumed run writes exactly what one
uninterrupted run writes.

Skipped problems are rows too (``"skipped": "no_positive" | "no_negative"``), and every stage
returns a :class:`StageStats` with its counts: nothing is dropped silently.

Problems are dicts with ``id``, ``problem`` and ``gold`` (aliases: ``problem_id``, ``question``,
``answer``); a missing gold answer, an empty problem set or a duplicate id is a ``ProblemError``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crps_synth.critique import ContrastiveAnalyzer
from crps_synth.errors import ProblemError, StageFileError
from crps_synth.export import ExportReport, rows_to_dataset, to_sft_rows
from crps_synth.mcts import MCTS
from crps_synth.sampling import ContrastivePairSampler, select_anchor, stratify
from crps_synth.synthesize import PathSynthesizer
from crps_synth.trajectory import (
    ContrastiveCritique,
    ContrastivePair,
    SynthesizedPath,
    Trajectory,
)

logger = logging.getLogger(__name__)

STAGES = ("explore", "pair", "critique", "synthesize", "export")


@dataclass
class StageStats:
    """Counts of one stage run. ``resumed`` = problems already done in the output file."""

    stage: str
    problems: int = 0
    resumed: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def normalize_problems(problems: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Validate problems → ``[{"id", "problem", "gold"}]`` (see the module doc)."""
    if isinstance(problems, (str, bytes)):
        raise ProblemError("problems must be an iterable of dicts, got a string")
    out, seen = [], set()
    for i, p in enumerate(problems):
        if not isinstance(p, Mapping):
            raise ProblemError(
                f"problem {i} must be a dict with id, problem, gold; got {type(p).__name__}"
            )
        pid = _first(p, "id", "problem_id")
        text = _first(p, "problem", "question")
        gold = _first(p, "gold", "answer")
        pid = str(i) if pid is None else str(pid)
        if not isinstance(text, str) or not text.strip():
            raise ProblemError(
                f"problem {pid!r} has no problem text (keys 'problem' or 'question'), got {text!r}"
            )
        if gold is None or not str(gold).strip():
            raise ProblemError(
                f"problem {pid!r} has no gold answer (keys 'gold' or 'answer'); verification is impossible without it"
            )
        if pid in seen:
            raise ProblemError(
                f"duplicate problem id {pid!r}; expected unique ids (resuming relies on them)"
            )
        seen.add(pid)
        out.append({"id": pid, "problem": text, "gold": str(gold).strip()})
    if not out:
        raise ProblemError("the problem set is empty; expected at least one problem")
    return out


def problem_seed(seed: int, problem_id: str) -> int:
    """A per-problem seed from the run seed and the id (independent of order and resumption)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()[:4], "little")
    return h % (2**31 - 1)


# ---------------------------------------------------------------- resumable JSONL


def read_stage(path: str | os.PathLike[str], *, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a stage file. A malformed *last* line (a kill mid-write) is cut from the file when
    ``repair`` is set and ignored otherwise; a malformed line elsewhere is a ``StageFileError``."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows, offset = [], 0
    for i, line in enumerate(lines):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if any(rest.strip() for rest in lines[i + 1 :]):
                    raise StageFileError(
                        f"{path}: line {i + 1} is not JSON ({e}); the file is damaged"
                    ) from None
                logger.warning("%s: dropping a half-written last line (an interrupted run)", path)
                if repair:
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                break
        offset += len(line) + 1
    return rows


def _append(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _resume(out: Path) -> set[str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_size and not out.read_bytes().endswith(b"\n"):
        read_stage(out, repair=True)
    return {str(r["problem_id"]) for r in read_stage(out, repair=True)}


def _pending(
    items: list[Any], out: Path, st: StageStats, key: Callable[[Any], str]
) -> list[tuple[str, Any]]:
    """``(problem_id, item)`` for the items not yet in ``out``; a resumed run counts the others in
    ``st.resumed`` (``out``'s folder is created and a torn last line repaired first)."""
    done = _resume(out)
    todo = []
    for item in items:
        pid = key(item)
        if pid in done:
            st.resumed += 1
        else:
            todo.append((pid, item))
    return todo


def _inputs(
    path: str | os.PathLike[str], stage: str, need: tuple[str, ...]
) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise StageFileError(
            f"{stage}: input file {p} does not exist; run the previous stage first"
        )
    rows = read_stage(p)
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        if missing:
            raise StageFileError(
                f"{p}: row {i} lacks {missing}; is it the output of the stage before '{stage}'?"
            )
    return rows


# ---------------------------------------------------------------- stages


def explore(
    problems: Iterable[Mapping[str, Any]],
    mcts: MCTS,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    on_problem: Callable[[str], None] | None = None,
) -> StageStats:
    """MCTS per problem → rows ``{problem_id, problem, gold, trajectories, n_nodes}``."""
    probs = normalize_problems(problems)
    out = Path(out)
    st = StageStats("explore", problems=len(probs))
    for _, p in _pending(probs, out, st, lambda p: p["id"]):
        tree = mcts.search(p["problem"], p["gold"], seed=problem_seed(seed, p["id"]))
        trajs = tree.trajectories()
        st.add("trajectories", len(trajs))
        st.add("correct", sum(t.is_correct for t in trajs))
        _append(
            out,
            {
                "problem_id": p["id"],
                "problem": p["problem"],
                "gold": p["gold"],
                "trajectories": [t.to_dict() for t in trajs],
                "n_nodes": len(tree.nodes()),
            },
        )
        if on_problem:
            on_problem(p["id"])
    return st


def pair(
    explored: str | os.PathLike[str],
    sampler: ContrastivePairSampler,
    out: str | os.PathLike[str],
) -> StageStats:
    """Stratify + sample pairs → rows ``{problem_id, problem, gold, anchor, pairs, skipped}``."""
    rows = _inputs(explored, "pair", ("problem_id", "problem", "gold", "trajectories"))
    out = Path(out)
    st = StageStats("pair", problems=len(rows))
    for pid, r in _pending(rows, out, st, lambda r: str(r["problem_id"])):
        trajs = [Trajectory.from_dict(t) for t in r["trajectories"]]
        strata = stratify(trajs)
        correct = strata["gold_positive"] + strata["soft_negative"]
        row: dict[str, Any] = {
            "problem_id": pid,
            "problem": r["problem"],
            "gold": r["gold"],
            "anchor": None,
            "pairs": [],
            "skipped": None,
        }
        if not correct:
            row["skipped"] = "no_positive"
        elif not strata["hard_negative"] and not strata["soft_negative"]:
            row["skipped"] = "no_negative"
        else:
            anchor = select_anchor(correct)
            pairs = sampler.sample(r["problem"], strata, anchor, problem_id=pid, gold=r["gold"])
            row["anchor"] = anchor.to_dict()
            row["pairs"] = [p.to_dict() for p in pairs]
            st.add("pairs", len(pairs))
            st.add("hard", sum(p.contrast_type == "hard" for p in pairs))
            st.add("soft", sum(p.contrast_type == "soft" for p in pairs))
        if row["skipped"]:
            st.add(row["skipped"])
        _append(out, row)
    return st


def _map(fn: Callable[[Any], Any], items: list[Any], max_workers: int) -> list[Any]:
    if max_workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="crps") as ex:
        return list(ex.map(fn, items))


def critique(
    paired: str | os.PathLike[str],
    analyzer: ContrastiveAnalyzer,
    out: str | os.PathLike[str],
    *,
    max_workers: int = 4,
) -> StageStats:
    """Analyst critiques → rows ``{problem_id, critiques, dropped}`` (skipped problems pass through)."""
    rows = _inputs(paired, "critique", ("problem_id", "pairs"))
    out = Path(out)
    st = StageStats("critique", problems=len(rows))
    for pid, r in _pending(rows, out, st, lambda r: str(r["problem_id"])):
        pairs = [ContrastivePair.from_dict(p) for p in r["pairs"]]
        res = analyzer.batch_analyze(pairs, max_workers=max_workers) if pairs else []
        kept = [c.to_dict() for c in res if c is not None]
        st.add("critiques", len(kept))
        st.add("dropped", len(res) - len(kept))
        if r.get("skipped"):
            st.add(r["skipped"])
        _append(
            out,
            {
                "problem_id": pid,
                "problem": r.get("problem", ""),
                "critiques": kept,
                "dropped": len(res) - len(kept),
                "skipped": r.get("skipped"),
            },
        )
    analyzer.check_failure_rate(final=True)
    return st


def synthesize(
    critiqued: str | os.PathLike[str],
    synthesizer: PathSynthesizer,
    out: str | os.PathLike[str],
    *,
    max_workers: int = 4,
) -> StageStats:
    """New solutions → rows ``{problem_id, paths}`` (each path with ``verified`` and ``rejected_reason``)."""
    rows = _inputs(critiqued, "synthesize", ("problem_id", "critiques"))
    out = Path(out)
    st = StageStats("synthesize", problems=len(rows))
    for pid, r in _pending(rows, out, st, lambda r: str(r["problem_id"])):
        crits = [ContrastiveCritique.from_dict(c) for c in r["critiques"]]
        paths: list[SynthesizedPath] = _map(synthesizer.synthesize, crits, max_workers)
        st.add("synthesized", len(paths))
        st.add("verified", sum(p.verified for p in paths))
        for p in paths:
            if p.rejected_reason:
                st.add(f"rejected_{p.rejected_reason}")
        _append(
            out,
            {"problem_id": pid, "paths": [p.to_dict() for p in paths], "skipped": r.get("skipped")},
        )
    return st


def export(
    synthesized: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    template: str = "default",
    oversample_to: int | None = None,
    seed: int = 0,
) -> tuple[StageStats, ExportReport]:
    """Verified, deduplicated SFT rows → ``out`` (JSONL, written atomically; not resumable: cheap)."""
    from papercore.io import write_jsonl

    rows = _inputs(synthesized, "export", ("problem_id", "paths"))
    paths = [SynthesizedPath.from_dict(p) for r in rows for p in r["paths"]]
    sft, report = to_sft_rows(paths, template=template, oversample_to=oversample_to, seed=seed)
    write_jsonl(out, sft)
    st = StageStats("export", problems=len(rows))
    st.add("paths", report.n_input)
    st.add("unique", report.n_unique)
    st.add("written", report.n_written)
    st.add("duplicates", report.n_duplicates)
    logger.info(
        "export: %d unique SFT rows (%d written) to %s", report.n_unique, report.n_written, out
    )
    return st, report


# ---------------------------------------------------------------- all in one


class CRPSPipeline:
    """All five stages in one call (a working directory keeps the JSONL of every stage).

    ``stats`` holds the :class:`StageStats` of the last run, by stage name.
    """

    def __init__(
        self,
        mcts: MCTS,
        sampler: ContrastivePairSampler,
        analyzer: ContrastiveAnalyzer,
        synthesizer: PathSynthesizer,
        verifier: Any = None,
        *,
        template: str = "default",
        max_workers: int = 4,
        seed: int = 0,
    ):
        self.mcts, self.sampler, self.analyzer, self.synthesizer = (
            mcts,
            sampler,
            analyzer,
            synthesizer,
        )
        if verifier is not None and synthesizer.verifier is None:
            synthesizer.verifier = verifier
        self.verifier = verifier
        self.template = template
        self.max_workers = max_workers
        self.seed = seed
        self.stats: dict[str, StageStats] = {}
        self.report: ExportReport | None = None

    def run(
        self, problems: Iterable[Mapping[str, Any]], workdir: str | os.PathLike[str] | None = None
    ):
        """Run every stage (resuming what ``workdir`` already holds); returns the SFT ``Dataset``
        (columns ``prompt, completion, problem_id, contrast_type, problem, solution``)."""
        probs = normalize_problems(problems)
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="crps-") as tmp:
                return self._run(probs, Path(tmp))
        return self._run(probs, Path(workdir))

    def _run(self, probs: list[dict[str, str]], wd: Path):
        wd.mkdir(parents=True, exist_ok=True)
        f = {s: wd / f"{s}.jsonl" for s in STAGES}
        self.stats = {
            "explore": explore(probs, self.mcts, f["explore"], seed=self.seed),
            "pair": pair(f["explore"], self.sampler, f["pair"]),
            "critique": critique(
                f["pair"], self.analyzer, f["critique"], max_workers=self.max_workers
            ),
            "synthesize": synthesize(
                f["critique"], self.synthesizer, f["synthesize"], max_workers=self.max_workers
            ),
        }
        self.stats["export"], self.report = export(
            f["synthesize"], f["export"], template=self.template, seed=self.seed
        )
        for name, s in self.stats.items():
            logger.info("%s: %s", name, s.counts)
        return rows_to_dataset(read_stage(f["export"]))
