"""neurosym-cal: calibrated confidence for chain-of-thought code generation (NeuroSym-Cal).

Pipeline: sample K programs per problem (:mod:`~neurosym_cal.sampling`), run them in a guarded
subprocess sandbox (:mod:`~neurosym_cal.sandbox`), turn their execution consensus into extrinsic
features (:mod:`~neurosym_cal.extrinsic`), add Reasoning Sensitivity Analysis of the hidden states
(:mod:`~neurosym_cal.rsa`), fuse both in the Contextual Calibration Network
(:mod:`~neurosym_cal.ccn`, :mod:`~neurosym_cal.calibrator`), and score calibration and selective
generation (:mod:`~neurosym_cal.metrics`, :mod:`~neurosym_cal.plots`).

Names are imported lazily so ``import neurosym_cal`` and ``neurosym-cal --help`` stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("neurosym-cal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "neurosym_cal.errors": (
        "CodeExtractionError",
        "FeatureMismatchError",
        "InvalidProbabilityError",
        "NeuroSymCalError",
        "OutputExistsError",
        "ProblemFormatError",
        "SandboxError",
        "SingleClassError",
        "TooFewSamplesError",
        "UnsupportedArchitectureError",
    ),
    "neurosym_cal.problems": (
        "CodeProblem",
        "PublicProblem",
        "load_humaneval",
        "load_problems_jsonl",
    ),
    "neurosym_cal.sandbox": ("CallResult", "ExecResult", "Sandbox"),
    "neurosym_cal.extraction": ("build_program", "extract_code"),
    "neurosym_cal.sampling": ("SampleSet", "sample_programs"),
    "neurosym_cal.extrinsic": (
        "ConsensusFeatures",
        "extrinsic_features",
        "label_problem",
        "label_problems",
        "probe_inputs_for",
    ),
    "neurosym_cal.rsa": ("RSAConfig", "reasoning_sensitivity"),
    "neurosym_cal.ccn": ("CCNCalibrator", "CCNConfig", "ContextualCalibrationNetwork"),
    "neurosym_cal.calibrator": ("FeatureTable", "FeatureTableError", "NeuroSymCalibrator"),
    "neurosym_cal.plots": ("reliability_diagram", "risk_coverage_plot"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
_SUBMODULES = ("baselines", "metrics")

__all__ = [
    "__version__",
    "CCNCalibrator",
    "CCNConfig",
    "CallResult",
    "CodeExtractionError",
    "CodeProblem",
    "ConsensusFeatures",
    "ContextualCalibrationNetwork",
    "ExecResult",
    "FeatureMismatchError",
    "FeatureTable",
    "FeatureTableError",
    "InvalidProbabilityError",
    "NeuroSymCalError",
    "NeuroSymCalibrator",
    "OutputExistsError",
    "ProblemFormatError",
    "PublicProblem",
    "RSAConfig",
    "SampleSet",
    "Sandbox",
    "SandboxError",
    "SingleClassError",
    "TooFewSamplesError",
    "UnsupportedArchitectureError",
    "baselines",
    "build_program",
    "extract_code",
    "extrinsic_features",
    "label_problem",
    "label_problems",
    "load_humaneval",
    "load_problems_jsonl",
    "metrics",
    "probe_inputs_for",
    "reasoning_sensitivity",
    "reliability_diagram",
    "risk_coverage_plot",
    "sample_programs",
]

_lazy = lazy_getattr(__name__, _WHERE)


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    return _lazy(name)


if TYPE_CHECKING:  # pragma: no cover
    from neurosym_cal import baselines, metrics
    from neurosym_cal.calibrator import FeatureTable, FeatureTableError, NeuroSymCalibrator
    from neurosym_cal.ccn import CCNCalibrator, CCNConfig, ContextualCalibrationNetwork
    from neurosym_cal.errors import (
        CodeExtractionError,
        FeatureMismatchError,
        InvalidProbabilityError,
        NeuroSymCalError,
        OutputExistsError,
        ProblemFormatError,
        SandboxError,
        SingleClassError,
        TooFewSamplesError,
        UnsupportedArchitectureError,
    )
    from neurosym_cal.extraction import build_program, extract_code
    from neurosym_cal.extrinsic import (
        ConsensusFeatures,
        extrinsic_features,
        label_problem,
        label_problems,
        probe_inputs_for,
    )
    from neurosym_cal.plots import reliability_diagram, risk_coverage_plot
    from neurosym_cal.problems import (
        CodeProblem,
        PublicProblem,
        load_humaneval,
        load_problems_jsonl,
    )
    from neurosym_cal.rsa import RSAConfig, reasoning_sensitivity
    from neurosym_cal.sampling import SampleSet, sample_programs
    from neurosym_cal.sandbox import CallResult, ExecResult, Sandbox
