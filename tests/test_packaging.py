"""Every distribution under packages/ builds (sdist + wheel) and installs ALONE into a fresh venv.

The wheel is installed with only its declared dependencies (workspace siblings come from the
wheels built here, everything else from PyPI at the locked versions), then imported and its
CLI run with ``--help``. An undeclared dependency fails here. New packages are picked up
automatically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH"),
]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    env.pop("VIRTUAL_ENV")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    if res.returncode != 0:
        pytest.fail(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-4000:]}"
        )
    return res


def _meta(pkg: Path) -> dict:
    return tomllib.loads((pkg / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(["uv", "build", "--all-packages", "--out-dir", str(out)], cwd=ROOT)
    return out


@pytest.fixture(scope="session")
def constraints(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    res = _run(
        [
            "uv",
            "export",
            "--frozen",
            "--all-packages",
            "--all-extras",
            "--no-emit-workspace",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
    )
    path.write_text(res.stdout)
    return path


@pytest.mark.parametrize("pkg", PACKAGES, ids=[p.name for p in PACKAGES])
def test_wheel_installs_alone(pkg: Path, dists: Path, constraints: Path, tmp_path: Path):
    meta = _meta(pkg)
    name, version = meta["name"], meta["version"]
    stem = name.replace("-", "_")
    wheels = list(dists.glob(f"{stem}-{version}-*.whl"))
    sdists = list(dists.glob(f"{stem}-{version}.tar.gz"))
    assert len(wheels) == 1, (
        f"expected one wheel for {name} {version} in {sorted(p.name for p in dists.iterdir())}"
    )
    assert len(sdists) == 1, f"expected one sdist for {name} {version}"

    venv = tmp_path / "venv"
    _run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    py = venv / "bin" / "python"
    _run(
        [
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            str(py),
            "--find-links",
            str(dists),
            "--constraint",
            str(constraints),
            str(wheels[0]),
        ]
    )

    res = _run([str(py), "-c", f"import {stem}; print({stem}.__version__)"], cwd=tmp_path)
    assert res.stdout.strip() == version
    for script in meta.get("scripts", {}):
        res = _run([str(venv / "bin" / script), "--help"], cwd=tmp_path)
        assert "Usage" in res.stdout
