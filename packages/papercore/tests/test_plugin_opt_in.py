"""papercore's pytest plugin does nothing in a project that does not ask for it (issue 12).

A throwaway project in ``tmp_path`` (its own ``pyproject.toml`` and test file) is run by a
subprocess ``python -m pytest`` with this workspace's interpreter, where papercore is installed:
without opting in, no papercore fixture exists and ``HF_HUB_OFFLINE`` stays unset; with
``-p papercore.testing.plugin`` (or ``pytest_plugins`` in a conftest) the fixtures are there.
The subprocess runs in ``tmp_path`` with ``--rootdir``/``-c`` on the throwaway project, so this
workspace's own ``addopts`` (which loads the plugin) cannot leak into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN_FIXTURES = (
    "papercore_offline",
    "tiny_tokenizer",
    "make_tiny_causal_lm",
    "tiny_llama",
    "tiny_model_dir",
    "tiny_encoder_tokenizer",
    "tiny_bert",
    "tiny_bert_dir",
    "minilm_path",
    "smollm2",
    "papercore_cache_dir",
    "trained_counting_lm",
    "one_torch_thread",
)

_TESTS = """
import os


def test_report():
    print("OFFLINE_AT_START=" + repr(os.environ.get("HF_HUB_OFFLINE")))
"""

_USES_FIXTURES = """
import os


def test_uses_papercore_fixtures(papercore_offline, papercore_cache_dir):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert papercore_cache_dir.is_dir()
"""


def _project(tmp_path: Path, conftest: str | None = None) -> Path:
    root = tmp_path / "throwaway"
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "throwaway"\nversion = "0"\n\n[tool.pytest.ini_options]\naddopts = []\n'
    )
    (root / "tests" / "test_report.py").write_text(_TESTS, encoding="utf-8")
    if conftest is not None:
        (root / "conftest.py").write_text(conftest, encoding="utf-8")
    return root


def _pytest(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` on the throwaway project; entry-point plugins autoload as for a user."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
        and not k.startswith("PYTEST_")
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--rootdir={root}",
        "-c",
        str(root / "pyproject.toml"),
        "-q",
        "-s",
        *args,
    ]
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert (res.returncode == 0) is ok, res.stdout + res.stderr
    return res


def _offline_at_start(res: subprocess.CompletedProcess[str]) -> str:
    line = next(ln for ln in res.stdout.splitlines() if "OFFLINE_AT_START=" in ln)
    return line.split("OFFLINE_AT_START=", 1)[1]


def _listed_fixtures(root: Path, *args: str) -> set[str]:
    """Names of papercore's fixtures that ``pytest --fixtures`` lists in the project."""
    out = _pytest(root, "--fixtures", *args).stdout
    listed = {ln.split()[0] for ln in out.splitlines() if ln and not ln[0].isspace()}
    return listed & set(PLUGIN_FIXTURES)


def test_without_opting_in_the_plugin_does_nothing(tmp_path):
    root = _project(tmp_path)
    assert _listed_fixtures(root) == set()
    res = _pytest(root, "tests/test_report.py")
    assert _offline_at_start(res) == "None", res.stdout
    (root / "tests" / "test_uses.py").write_text(_USES_FIXTURES, encoding="utf-8")
    res = _pytest(root, "tests/test_uses.py", ok=False)
    assert "fixture 'papercore_offline' not found" in res.stdout, res.stdout


def test_dash_p_loads_the_fixtures_and_sets_no_env_at_import(tmp_path):
    root = _project(tmp_path)
    assert _listed_fixtures(root, "-p", "papercore.testing.plugin") == set(PLUGIN_FIXTURES)
    (root / "tests" / "test_uses.py").write_text(_USES_FIXTURES, encoding="utf-8")
    # test_report runs first (alphabetical): importing the plugin set nothing
    res = _pytest(
        root, "-p", "papercore.testing.plugin", "tests/test_report.py", "tests/test_uses.py"
    )
    assert _offline_at_start(res) == "None", res.stdout
    assert "2 passed" in res.stdout, res.stdout


def test_conftest_pytest_plugins_line_loads_it_too(tmp_path):
    root = _project(tmp_path, conftest='pytest_plugins = ["papercore.testing.plugin"]\n')
    assert _listed_fixtures(root) == set(PLUGIN_FIXTURES)


def test_ini_option_turns_offline_on_for_the_whole_run(tmp_path):
    root = _project(tmp_path)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "throwaway"\nversion = "0"\n\n[tool.pytest.ini_options]\n'
        'addopts = ["-p", "papercore.testing.plugin"]\npapercore_offline = true\n'
    )
    res = _pytest(root, "tests/test_report.py")
    assert _offline_at_start(res) == "'1'", res.stdout


def test_the_installed_distribution_registers_no_pytest11_entry_point():
    from importlib.metadata import entry_points

    assert [ep for ep in entry_points(group="pytest11") if ep.value.startswith("papercore")] == []
