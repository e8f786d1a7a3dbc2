"""Every press, in one place (kvpress-style)."""

from structkv.presses.base import BasePress
from structkv.presses.fastkv import FastKVPress
from structkv.presses.gemfilter import GemFilterPress
from structkv.presses.oracle import OraclePress
from structkv.presses.propagating import PropagatingPress
from structkv.presses.pyramidkv import PyramidKVPress
from structkv.presses.random_press import RandomPress
from structkv.presses.scorer import ScorerPress
from structkv.presses.snapkv import SnapKVPress
from structkv.presses.streaming_llm import StreamingLLMPress
from structkv.presses.structkv import StructKVPress

__all__ = [
    "BasePress",
    "FastKVPress",
    "GemFilterPress",
    "OraclePress",
    "PropagatingPress",
    "PyramidKVPress",
    "RandomPress",
    "ScorerPress",
    "SnapKVPress",
    "StreamingLLMPress",
    "StructKVPress",
]
