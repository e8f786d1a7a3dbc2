"""Label smoothers, one module per variant (see :mod:`kls.smoothing` for the overview)."""

from kls.smoothers.base import LabelSmoother
from kls.smoothers.config import KLSConfig
from kls.smoothers.keyword import KeywordLabelSmoother
from kls.smoothers.uniform import UniformLabelSmoother

__all__ = ["KLSConfig", "KeywordLabelSmoother", "LabelSmoother", "UniformLabelSmoother"]
