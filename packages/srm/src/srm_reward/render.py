"""Feature fusion by concatenation (spec §2.2): ``(prompt, response, {dim: aux}) → one tagged RM input``.

::

    <prompt>p</prompt>
    <response>r</response>
    <aux dim=NAME_1>a_1</aux>
    ...

* **Fixed order**: aux blocks follow ``branch_order`` (the trained branch order), whatever the dict order.
* **Escaping**: ``&``, ``<`` and ``>`` inside prompt, response and aux texts become ``&amp;``, ``&lt;``,
  ``&gt;``, so no user or branch text can open or close a tag (a response containing ``</response>`` stays
  inside its block).
* **Budget**: the token ids the RM sees (:meth:`StructuralInputRenderer.encode`: the tokenizer's ids of the
  text plus its EOS, exactly what TRL's ``RewardTrainer`` tokenizes) never exceed ``max_length``. Each aux
  text is first cut to ``max_aux_tokens``; when the whole is still too long, aux texts are cut (then dropped)
  in ``drop_order`` (default quality, style, entity, semantic, factcheck), then the prompt loses tokens
  from its left, and only then the response loses tokens from its **left** (its tail is always kept; a
  warning is logged). Counters of each kind are in :attr:`StructuralInputRenderer.stats`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from srm_reward.dims import DEFAULT_DIMENSIONS, DEFAULT_DROP_ORDER, check_unique
from srm_reward.errors import RenderError, SRMConfigError, UnknownDimensionError

logger = logging.getLogger(__name__)

__all__ = ["UNAVAILABLE", "StructuralInputRenderer", "escape", "unescape"]

UNAVAILABLE = "UNAVAILABLE"
"""The aux text of a branch that failed, timed out or was dropped (branch dropout)."""

_DEFAULT_ORDER = tuple(d.name for d in DEFAULT_DIMENSIONS)


def escape(text: str) -> str:
    """Escape the tag delimiters: ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Inverse of :func:`escape`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class StructuralInputRenderer:
    """Render ``(prompt, response, aux)`` into the tagged RM input within ``max_length`` tokens.

    Args:
        tokenizer: the reward model's tokenizer (lengths are counted in its tokens).
        max_length: hard bound on ``len(encode(text))`` (text ids + EOS).
        max_aux_tokens: per-branch aux budget (an int, or ``{dim: int}`` with a default of 128).
        drop_order: aux dimensions cut first to last when over budget; dimensions not listed are cut first.
        branch_order: order of aux blocks in the text (default: the paper's order for known names, then
            the others sorted). Set by :class:`~srm_reward.model.StructuralRewardModel` to its branch order.
        add_eos: append the tokenizer's EOS (as TRL's ``RewardTrainer`` does for plain-text pairs).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_length: int = 1024,
        max_aux_tokens: int | Mapping[str, int] = 128,
        drop_order: Sequence[str] = DEFAULT_DROP_ORDER,
        branch_order: Sequence[str] | None = None,
        add_eos: bool = True,
    ) -> None:
        if not isinstance(max_length, int) or max_length < 8:
            raise SRMConfigError(f"max_length must be an int >= 8, got {max_length!r}")
        if isinstance(max_aux_tokens, Mapping):
            bad = {k: v for k, v in max_aux_tokens.items() if not isinstance(v, int) or v < 0}
        else:
            bad = (
                {}
                if isinstance(max_aux_tokens, int) and max_aux_tokens >= 0
                else {"*": max_aux_tokens}
            )
        if bad:
            raise SRMConfigError(f"max_aux_tokens must be ints >= 0, got {bad}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_aux_tokens = max_aux_tokens
        self.drop_order = tuple(check_unique(drop_order, "drop_order"))
        self.branch_order = (
            None if branch_order is None else tuple(check_unique(branch_order, "branch"))
        )
        self.add_eos = add_eos
        self.stats: Counter[str] = Counter()

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        """The ids the RM sees for a rendered text: ``tokenizer(text + eos)`` (TRL RewardTrainer's tokenisation)."""
        eos = getattr(self.tokenizer, "eos_token", None)
        if self.add_eos and eos and not text.endswith(eos):
            text = text + eos
        return list(self.tokenizer(text)["input_ids"])

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False) if ids else ""

    def _cut(self, text: str, n: int, *, keep: str) -> str:
        """Remove ``n`` tokens from the right (``keep="head"``) or the left (``keep="tail"``) of ``text``;
        always returns a strictly shorter string when ``text`` is non-empty."""
        ids = self._ids(text)
        n = max(1, n)
        kept = ids[: max(0, len(ids) - n)] if keep == "head" else ids[n:]
        out = self._decode(kept)
        if len(out) >= len(text):  # a decode that does not round-trip: cut characters instead
            out = text[: len(text) - 1] if keep == "head" else text[1:]
        # never leave half an escape sequence ("&am") that could be read as something else
        if keep == "head":
            amp = out.rfind("&")
            if amp >= 0 and ";" not in out[amp:]:
                out = out[:amp]
        else:
            semi = out.find(";")
            if semi >= 0 and "&" not in out[:semi]:
                out = out[semi + 1 :]
        return out

    def _aux_budget(self, dim: str) -> int:
        if isinstance(self.max_aux_tokens, Mapping):
            return int(self.max_aux_tokens.get(dim, 128))
        return int(self.max_aux_tokens)

    # ------------------------------------------------------------------ render
    def order(self, names: Sequence[str]) -> list[str]:
        """The rendering order of aux dimensions ``names``."""
        if self.branch_order is not None:
            unknown = sorted(set(names) - set(self.branch_order))
            if unknown:
                raise UnknownDimensionError(
                    f"aux for dimension(s) {unknown} not among the renderer's branches {list(self.branch_order)}"
                )
            return [n for n in self.branch_order if n in names]
        known = [n for n in _DEFAULT_ORDER if n in names]
        return known + sorted(n for n in names if n not in _DEFAULT_ORDER)

    @staticmethod
    def _join(prompt: str, response: str, aux: list[tuple[str, str]]) -> str:
        parts = [f"<prompt>{prompt}</prompt>\n<response>{response}</response>"]
        parts += [f"\n<aux dim={name}>{text}</aux>" for name, text in aux]
        return "".join(parts)

    def __call__(self, prompt: str, response: str, aux: Mapping[str, str] | None = None) -> str:
        """The rendered text (see the module doc); ``len(self.encode(text)) <= max_length`` always."""
        for what, value in (("prompt", prompt), ("response", response)):
            if not isinstance(value, str):
                raise SRMConfigError(f"{what} must be a string, got {type(value).__name__}")
        aux = dict(aux or {})
        for k, v in aux.items():
            if not isinstance(v, str):
                raise SRMConfigError(f"aux[{k!r}] must be a string, got {type(v).__name__}")
        self.stats["rendered"] += 1
        p, r = escape(prompt), escape(response)
        blocks: dict[str, str] = {}
        for name in self.order(list(aux)):
            text = escape(aux[name])
            budget = self._aux_budget(name)
            if len(self._ids(text)) > budget:
                text = self._decode(self._ids(text)[:budget])
                self.stats["aux_cut_to_budget"] += 1
            blocks[name] = text
        drop = [n for n in blocks if n not in self.drop_order] + [
            n for n in self.drop_order if n in blocks
        ]

        def total() -> int:
            return len(self.encode(self._join(p, r, list(blocks.items()))))

        over = total() - self.max_length
        touched = set()
        while over > 0:
            if drop:  # 1. aux texts, in drop order: cut, then remove the block
                name = drop[0]
                if blocks[name]:
                    blocks[name] = self._cut(blocks[name], over, keep="head")
                    touched.add(("aux", name))
                else:
                    del blocks[name]
                    drop.pop(0)
                    self.stats["aux_dropped"] += 1
            elif p:  # 2. the prompt, from the left
                p = self._cut(p, over, keep="tail")
                touched.add(("prompt", ""))
            elif r:  # 3. the response, from the left (its tail is kept)
                r = self._cut(r, over, keep="tail")
                touched.add(("response", ""))
            else:
                raise RenderError(
                    f"max_length={self.max_length} cannot hold even the empty tags "
                    f"({total()} tokens); expected a larger max_length"
                )
            over = total() - self.max_length
        for kind, _ in touched:
            self.stats[f"{kind}_truncated"] += 1
        if ("response", "") in touched:
            logger.warning(
                "response alone exceeds max_length=%d: kept its tail (%d responses cut so far)",
                self.max_length,
                self.stats["response_truncated"],
            )
        return self._join(p, r, list(blocks.items()))

    def render_ids(
        self, prompt: str, response: str, aux: Mapping[str, str] | None = None
    ) -> list[int]:
        """``encode(self(prompt, response, aux))``."""
        return self.encode(self(prompt, response, aux))

    def config(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "max_aux_tokens": dict(self.max_aux_tokens)
            if isinstance(self.max_aux_tokens, Mapping)
            else self.max_aux_tokens,
            "drop_order": list(self.drop_order),
            "branch_order": None if self.branch_order is None else list(self.branch_order),
            "add_eos": self.add_eos,
        }
