"""Multi-task reward (spec §2.2) as one scalar and as three TRL reward functions.

r = 0 when the output does not parse (official regexes by default), else
r = 1 − w_pi·[PI wrong] − w_mur·[MUR wrong] − w_rating·[rating wrong].

For TRL, :func:`make_reward_funcs` returns one callable per head, each ``[head correct]`` (0 when the
output does not parse), and the weights: TRL's weighted sum Σ w_k·r_k equals :func:`multitask_reward`
whenever the weights sum to 1 (hence the warning when they do not).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ts_guard.errors import GuardParseError, RatingError, WeightsError
from ts_guard.parsing import parse_heads

logger = logging.getLogger(__name__)

__all__ = [
    "WEIGHT_PRESETS",
    "resolve_weights",
    "multitask_reward",
    "make_reward_funcs",
    "HeadReward",
    "completion_text",
    "check_rating",
]

#: (w_pi, w_mur, w_rating). "uniform" is the released training script's file (0.33/0.33/0.34).
WEIGHT_PRESETS: dict[str, tuple[float, float, float]] = {
    "uniform": (0.33, 0.33, 0.34),
    "pi_mur_heavy": (0.4, 0.4, 0.2),
    "0.4,0.4,0.2": (0.4, 0.4, 0.2),
}
_VALID_RATINGS = (0.0, 0.5, 1.0)


def resolve_weights(weights: str | Sequence[float]) -> tuple[float, float, float]:
    """A preset name, ``"a,b,c"`` or a 3-sequence → (w_pi, w_mur, w_rating).

    Negative or non-finite weights / wrong length raise :class:`WeightsError`; a sum other than 1 warns
    (the reward range changes and TRL's weighted sum no longer equals the scalar reward).
    """
    if isinstance(weights, str):
        if weights in WEIGHT_PRESETS:
            return WEIGHT_PRESETS[weights]
        try:
            weights = [float(x) for x in weights.split(",")]
        except ValueError:
            raise WeightsError(
                f"weights must be a preset {sorted(WEIGHT_PRESETS)} or 'w_pi,w_mur,w_rating', got {weights!r}"
            ) from None
    w = tuple(float(x) for x in weights)
    if len(w) != 3:
        raise WeightsError(f"weights must have 3 entries (pi, mur, rating), got {len(w)}: {w}")
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise WeightsError(f"weights must be finite and >= 0, got {w}")
    if abs(sum(w) - 1.0) > 1e-6:
        warnings.warn(
            f"reward weights {w} sum to {sum(w):.4f}, not 1: the reward range changes",
            UserWarning,
            stacklevel=2,
        )
    return w  # type: ignore[return-value]


def check_rating(value: Any, where: str = "ground truth") -> float:
    """``value`` as a float in {0.0, 0.5, 1.0}, else :class:`RatingError`."""
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise RatingError(
            f"{where} harmfulness rating must be one of 0.0|0.5|1.0, got {value!r}"
        ) from None
    if r not in _VALID_RATINGS:
        raise RatingError(f"{where} harmfulness rating must be one of 0.0|0.5|1.0, got {value!r}")
    return r


def _gt(ground_truth: Mapping[str, Any]) -> tuple[bool, bool, float]:
    """(pi, mur, rating) from our keys (gt_pi, gt_mur, gt_rating) or the released ones."""
    if "gt_pi" in ground_truth:
        return (
            bool(ground_truth["gt_pi"]),
            bool(ground_truth["gt_mur"]),
            check_rating(ground_truth["gt_rating"]),
        )
    try:
        return (
            bool(ground_truth["Prompt_Injection"]),
            bool(ground_truth["Malicious_User_Request"]),
            float(ground_truth["Harmfulness_Rating"]),
        )
    except KeyError as e:
        raise RatingError(
            f"ground truth needs gt_pi/gt_mur/gt_rating (or Prompt_Injection/Malicious_User_Request/"
            f"Harmfulness_Rating), missing {e}"
        ) from None


def completion_text(completion: Any) -> str:
    """A TRL completion (string or list of chat messages) as text (the last assistant message)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        for msg in reversed(completion):
            if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
                content = msg.get("content", "")
                if isinstance(content, list):  # content blocks
                    return "".join(b.get("text", "") for b in content if isinstance(b, dict))
                return str(content)
    return "" if completion is None else str(completion)


def multitask_reward(
    completion: Any,
    ground_truth: Mapping[str, Any],
    weights: str | Sequence[float] = "uniform",
    *,
    official: bool = True,
) -> float:
    """The scalar multi-task reward of one completion (module docstring); ``official`` picks the parser."""
    w_pi, w_mur, w_rating = resolve_weights(weights)
    gt_pi, gt_mur, gt_rating = _gt(ground_truth)
    try:
        heads = parse_heads(completion_text(completion), official=official)
    except GuardParseError:
        return 0
    r = 1.0
    if heads["being_attacked"] != gt_pi:
        r -= w_pi
    if heads["malicious_request"] != gt_mur:
        r -= w_mur
    if heads["harmfulness"] != gt_rating:
        r -= w_rating
    return r


class HeadReward:
    """A TRL reward function for one head: 1.0 when that head is right, 0.0 when wrong or unparsable.

    Called as ``f(prompts=, completions=, gt_pi=, gt_mur=, gt_rating=, **kwargs)``; picklable.
    """

    _COLUMN: ClassVar[dict[str, str]] = {"pi": "gt_pi", "mur": "gt_mur", "rating": "gt_rating"}
    _HEAD: ClassVar[dict[str, str]] = {
        "pi": "being_attacked",
        "mur": "malicious_request",
        "rating": "harmfulness",
    }

    def __init__(self, head: str, *, official: bool = True) -> None:
        if head not in self._COLUMN:
            raise WeightsError(f"head must be one of {sorted(self._COLUMN)}, got {head!r}")
        self.head = head
        self.official = official
        self.__name__ = f"{head}_reward"

    def __call__(
        self, prompts: Any = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        column = self._COLUMN[self.head]
        if column not in kwargs:
            raise KeyError(
                f"reward {self.__name__} needs the dataset column {column!r}; got columns {sorted(kwargs)}"
            )
        gts = kwargs[column]
        out: list[float] = []
        for completion, gt in zip(completions, gts, strict=True):
            try:
                heads = parse_heads(completion_text(completion), official=self.official)
            except GuardParseError:
                out.append(0.0)
                continue
            pred = heads[self._HEAD[self.head]]
            truth = check_rating(gt) if self.head == "rating" else bool(gt)
            out.append(1.0 if pred == truth else 0.0)
        return out

    def __repr__(self) -> str:
        return f"HeadReward({self.head!r}, official={self.official})"


def make_reward_funcs(
    weights: str | Sequence[float] = "uniform", *, official: bool = True
) -> tuple[list[HeadReward], list[float]]:
    """``(reward_funcs, reward_weights)`` for ``trl.GRPOTrainer`` / ``GRPOConfig(reward_weights=...)``.

    Functions are ``pi_reward``, ``mur_reward``, ``rating_reward`` (TRL logs ``rewards/<name>/mean``).
    """
    w = resolve_weights(weights)
    return [
        HeadReward("pi", official=official),
        HeadReward("mur", official=official),
        HeadReward("rating", official=official),
    ], list(w)
