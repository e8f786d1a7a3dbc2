"""Every distribution under packages/ is publishable: artifacts, metadata, and installing ALONE.

* every package's sdist and wheel are built once per session (``uv build --package``);
* each carries the Apache-2.0 ``LICENSE``, PEP 639 license metadata, project URLs, classifiers,
  README links that work on PyPI, and no stray files;
* each wheel installs into a fresh venv with only its own wheel plus a find-links directory that
  holds ONLY its workspace siblings' wheels (third-party packages from PyPI at the locked versions),
  through ``scripts/release_check.py --dry-run`` (the same code the release workflow runs); then
  it imports at the declared version and every console script answers ``--help``. An undeclared
  dependency, or a sibling the package forgot to declare, fails here;
* the release rules of ``scripts/release_check.py`` (tag = version, dated changelog heading, no
  ``.dev`` release, siblings satisfiable from the index) are unit-tested.

New packages are picked up automatically: each needs a ``LICENSE`` (the root one), a
``CHANGELOG.md`` whose first ``##`` heading is its version, and the metadata checked below.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
LICENSE = ROOT / "LICENSE"

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH"),
]


def _load_release_check():
    spec = importlib.util.spec_from_file_location(
        "release_check", ROOT / "scripts" / "release_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["release_check"] = module
    spec.loader.exec_module(module)
    return module


rc = _load_release_check()


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    if res.returncode != 0:
        pytest.fail(
            f"command failed ({res.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout\n{res.stdout[-6000:]}\n--- stderr\n{res.stderr[-4000:]}"
        )
    return res


@pytest.fixture(scope="session")
def members():
    return rc.workspace(ROOT)


@pytest.fixture(scope="session")
def build(tmp_path_factory, members):
    """``build(pkg) -> dist dir``: each package's sdist + wheel, built once per session."""
    out = tmp_path_factory.mktemp("dist")
    done: dict[str, BaseException | None] = {}

    def _build(pkg):
        if pkg.name not in done:
            try:
                rc.build(pkg, out)
                done[pkg.name] = None
            except RuntimeError as exc:
                done[pkg.name] = exc
        if done[pkg.name] is not None:
            pytest.fail(f"uv build --package {pkg.name} failed:\n{done[pkg.name]}")
        return out

    return _build


@pytest.fixture(scope="session")
def constraints(tmp_path_factory) -> Path:
    """The locked versions of every third-party package, as pip constraints."""
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


def _pkg(directory: Path, members):
    return rc.find_package(directory.name, members)


# ------------------------------------------------------------------ artifacts


@pytest.mark.parametrize("directory", PACKAGE_DIRS, ids=[p.name for p in PACKAGE_DIRS])
def test_artifacts_carry_license_metadata_and_nothing_stray(directory: Path, members, build):
    pkg = _pkg(directory, members)
    out = build(pkg)
    wheel, sdist = rc.wheel_path(pkg, out), rc.sdist_path(pkg, out)
    top = f"{pkg.stem}-{pkg.version}"
    license_text = LICENSE.read_bytes()
    assert b"Apache License" in license_text and b"Version 2.0, January 2004" in license_text

    assert (directory / "LICENSE").is_file(), f"copy the root LICENSE to {directory}/LICENSE"
    assert (directory / "LICENSE").read_bytes() == license_text, f"{directory}/LICENSE"
    with zipfile.ZipFile(wheel) as zf:
        wheel_names = zf.namelist()
        assert f"{top}.dist-info/licenses/LICENSE" in wheel_names, 'license-files = ["LICENSE"]'
        assert zf.read(f"{top}.dist-info/licenses/LICENSE") == license_text
    with tarfile.open(sdist) as tf:
        sdist_names = [m.name for m in tf.getmembers() if m.isfile()]
        assert f"{top}/LICENSE" in sdist_names, sdist_names
        assert tf.extractfile(f"{top}/LICENSE").read() == license_text

    meta = rc.wheel_metadata(wheel)
    assert meta["Name"] == pkg.name and meta["Version"] == pkg.version
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.11"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Repository", "Issues", "Changelog"}, urls
    assert all(u.startswith("https://github.com/") for u in urls.values()), urls
    classifiers = meta.get_all("Classifier", [])
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    } <= set(classifiers), classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    # PEP 639: with a license expression, `License ::` classifiers are deprecated (setuptools
    # refuses them, uv_build warns)
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert rc.relative_links(meta.get_payload()) == [], "README links must be absolute for PyPI"

    assert rc.stray_files(wheel_names) == []
    # uv_build >= 0.12 writes <top>/pyproject.toml.orig (the original of its TOML-1.0 rewrite)
    assert rc.stray_files(sdist_names, (f"{top}/pyproject.toml.orig",)) == []
    assert not [n for n in sdist_names if n.endswith(".orig") and n != f"{top}/pyproject.toml.orig"]
    assert f"{top}/pyproject.toml" in sdist_names and f"{top}/README.md" in sdist_names
    assert rc.check_artifacts(pkg, out).problems == []


def test_no_orig_or_rej_files_are_tracked():
    res = _run(["git", "ls-files"], cwd=ROOT)
    assert [f for f in res.stdout.splitlines() if f.endswith((".orig", ".rej"))] == []


def test_root_readme_layout_names_only_existing_paths():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    paths = [line.split()[0] for line in block.splitlines() if line.strip()]
    assert paths, "the Layout block lists no paths"
    for entry in paths:
        if "<" in entry:  # packages/<dist>/
            entry = entry.split("<", 1)[0]
        assert (ROOT / entry).exists(), f"README layout names {entry}, which is not in the tree"


# ------------------------------------------------------------------ install alone


def _installed_workspace_dists(py: Path, members) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    res = _run([str(py), "-c", code])
    found = json.loads(res.stdout)
    return {rc.normalize(n): v for n, v in found.items() if rc.normalize(n) in members}


@pytest.mark.parametrize("directory", PACKAGE_DIRS, ids=[p.name for p in PACKAGE_DIRS])
def test_wheel_installs_alone_with_only_its_siblings(
    directory: Path, members, build, constraints: Path, tmp_path: Path
):
    pkg = _pkg(directory, members)
    out = build(pkg)
    siblings = rc.sibling_closure(pkg, members)
    find_links = tmp_path / "siblings"
    find_links.mkdir()
    for sib in siblings:  # ONLY the siblings' wheels: a missing declaration cannot be masked
        shutil.copy2(rc.wheel_path(sib, build(sib)), find_links)
    assert len(list(find_links.iterdir())) == len(siblings)

    venv = tmp_path / "venv"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "release_check.py"),
            pkg.name,
            "--dry-run",
            "--steps",
            "check,install",
            "--dist-dir",
            str(out),
            "--find-links",
            str(find_links),
            "--constraint",
            str(constraints),
            "--venv",
            str(venv),
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )
    assert res.returncode == 0, (
        f"release_check dry run failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
    )
    assert f"dry run of {pkg.name} {pkg.version}: OK" in res.stdout

    # checked again here, independently of the script
    py = rc.venv_python(venv)
    res = _run(
        [str(py), "-c", f"import {pkg.module}; print({pkg.module}.__version__)"], cwd=tmp_path
    )
    assert res.stdout.strip() == pkg.version
    for script in pkg.scripts:
        res = _run([str(venv / "bin" / script), "--help"], cwd=tmp_path)
        assert "Usage" in res.stdout
    expected = {rc.normalize(pkg.name): pkg.version} | {
        rc.normalize(s.name): s.version for s in rc.sibling_closure(pkg, members, base_only=True)
    }
    assert _installed_workspace_dists(py, members) == expected


# ------------------------------------------------------------------ release rules (unit)


def _fake(tmp_path: Path, version: str, changelog: str, deps=("torch>=2.4",)):
    d = tmp_path / "pkg"
    d.mkdir(exist_ok=True)
    deps_toml = ", ".join(f'"{r}"' for r in deps)
    (d / "pyproject.toml").write_text(
        f'[project]\nname = "demo-pkg"\nversion = "{version}"\ndependencies = [{deps_toml}]\n'
    )
    (d / "CHANGELOG.md").write_text(changelog)
    pkg = rc.load_package(d)
    core = rc.Package(
        directory=tmp_path, name="papercore", version="0.2.0", requirements=(),
        base_requirements=(), extras=(), scripts=(), dev_group=(),
    )  # fmt: skip
    return pkg, {"demo-pkg": pkg, "papercore": core}


def test_parse_tag():
    assert rc.parse_tag("papercore-v0.2.0") == ("papercore", "0.2.0")
    assert rc.parse_tag("agentic-sql-v0.1.0rc1") == ("agentic-sql", "0.1.0rc1")
    for bad in ("papercore", "papercore-0.2.0", "-v0.2.0", "papercore-vx"):
        with pytest.raises(rc.ReleaseCheckError, match="<dist>-v<version>"):
            rc.parse_tag(bad)


def test_a_released_version_with_a_dated_heading_passes(tmp_path):
    pkg, members = _fake(tmp_path, "0.2.0", "# Changelog\n\n## 0.2.0 (2026-12-01)\n\n- x\n")
    report = rc.check_release(pkg, "0.2.0", members)
    assert report.ok and report.notes == []


def test_tag_must_equal_the_declared_version_exactly(tmp_path):
    pkg, members = _fake(tmp_path, "0.2.0", "## 0.2.0\n")
    for tag_version in ("0.2.1", "0.2", "0.2.0.0"):
        report = rc.check_release(pkg, tag_version, members)
        assert not report.ok
        assert "declares '0.2.0'" in report.problems[0]


def test_an_unreleased_heading_is_refused(tmp_path):
    pkg, members = _fake(tmp_path, "0.2.0", "## 0.2.0 (unreleased)\n")
    report = rc.check_release(pkg, "0.2.0", members)
    assert [p for p in report.problems if "says unreleased" in p]
    # even in a dry run: 0.2.0 is not a .dev version, so it must be releasable as it stands
    assert not rc.check_release(pkg, "0.2.0", members, dry_run=True).ok


def test_a_dev_version_cannot_be_released_but_dry_runs_report_it(tmp_path):
    pkg, members = _fake(
        tmp_path, "0.2.0.dev0", "## 0.2.0.dev0 (unreleased)\n", deps=("papercore>=0.2.0.dev0",)
    )
    report = rc.check_release(pkg, "0.2.0.dev0", members)
    assert len(report.problems) == 3, report.problems  # .dev version, unreleased, .dev sibling
    dry = rc.check_release(pkg, "0.2.0.dev0", members, dry_run=True)
    assert dry.ok and len(dry.notes) == 3


def test_changelog_consistency_is_fatal_even_in_a_dry_run(tmp_path):
    cases = {
        "## 0.1.0\n": "needs a '## 0.1.0.dev0' heading",  # 0.1.0 is not 0.1.0.dev0
        "## Unreleased\n": "needs a '## 0.1.0.dev0' heading",
        "## 0.0.9\n\n## 0.1.0.dev0 (unreleased)\n": "must be the first '## ' heading",
        "## 0.1.0.dev0\n\n## 0.1.0.dev0\n": "expected exactly one",
    }
    for text, message in cases.items():
        pkg, members = _fake(tmp_path, "0.1.0.dev0", text)
        report = rc.check_release(pkg, "0.1.0.dev0", members, dry_run=True)
        assert [p for p in report.problems if message in p], (text, report.problems)
    pkg, members = _fake(tmp_path, "0.1.0", "## 0.1.0.dev0 (unreleased)\n")
    assert "needs a '## 0.1.0' heading" in rc.check_release(pkg, "0.1.0", members).problems[0]


def test_a_release_must_require_released_siblings(tmp_path):
    pkg, members = _fake(tmp_path, "0.3.0", "## 0.3.0\n", deps=("papercore[retrieval]>=0.2rc1",))
    assert (
        "development version of a workspace sibling"
        in rc.check_release(pkg, "0.3.0", members).problems[0]
    )
    pkg, members = _fake(tmp_path, "0.3.0", "## 0.3.0\n", deps=("papercore[retrieval]>=0.2.0",))
    assert rc.check_release(pkg, "0.3.0", members).ok


def test_command_line_refuses_bad_tags_and_dev_releases(members):
    pkg = rc.find_package("papercore", members)
    assert rc.main(["--tag", "papercore-v99.0.0", "--steps", "check"]) == 1
    assert rc.main(["--tag", "nosuchpackage-v1.0.0", "--steps", "check"]) == 2
    assert rc.main(["--tag", "papercore", "--steps", "check"]) == 2
    # today every package is a .dev version: a release of it is refused, its dry run passes
    if rc.is_prerelease(pkg.version):
        assert rc.main(["--tag", f"papercore-v{pkg.version}", "--steps", "check"]) == 1
    assert rc.main(["papercore", "--dry-run", "--steps", "check"]) == 0


@pytest.mark.parametrize("directory", PACKAGE_DIRS, ids=[p.name for p in PACKAGE_DIRS])
def test_each_package_passes_the_dry_run_checks(directory: Path, members):
    pkg = _pkg(directory, members)
    report = rc.check_release(pkg, pkg.version, members, dry_run=True)
    assert report.ok, report.problems


def test_release_refuses_a_sibling_the_index_cannot_satisfy(tmp_path, members, build):
    """(e): with an index holding no papercore, releasing quadbert is refused by name."""
    quadbert = rc.find_package("quadbert", members)
    core = rc.find_package("papercore", members)
    empty = tmp_path / "empty-index"
    empty.mkdir()
    report = rc.install(
        quadbert, members, tmp_path / "unused.whl", tmp_path / "venv",
        dry_run=False, find_links=None, constraints=[],
        index_url=empty.as_uri(), python=sys.executable,
    )  # fmt: skip
    assert not report.ok and "release papercore first" in report.problems[0]
    assert not (tmp_path / "venv").exists()

    # the same requirement is satisfiable once the index has a matching papercore
    index = tmp_path / "index"
    (index / "papercore").mkdir(parents=True)
    wheel = rc.wheel_path(core, build(core))
    shutil.copy2(wheel, index / "papercore")
    (index / "papercore" / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    req = next(r for r in quadbert.requirements if rc.requirement_name(r) == "papercore")
    assert rc.pypi_has(req, index.as_uri(), "3.11") == core.version


def test_stray_files_and_relative_links_are_detected():
    names = [
        "p-1.0/src/p/__init__.py",
        "p-1.0/pyproject.toml.orig",
        "p-1.0/src/p/x.py.rej",
        "p-1.0/src/p/__pycache__/x.cpython-311.pyc",
        "p-1.0/.pytest_cache/v/cache/nodeids",
        "p-1.0/bench/results/cache/run.json",
    ]
    assert rc.stray_files(names, ("p-1.0/pyproject.toml.orig",)) == names[2:]
    assert rc.stray_files(names)[0] == "p-1.0/pyproject.toml.orig"
    md = '![a](bench/a.png) [b](https://x.org/b) [c](#design) [d](../d.md) <img src="e.png">'
    assert rc.relative_links(md) == ["bench/a.png", "#design", "../d.md", "e.png"]
    assert rc.is_prerelease("0.2.0.dev0") and rc.is_prerelease(">=1.0rc1")
    assert not rc.is_prerelease(">=0.2.0") and not rc.is_prerelease("2.4")
    assert rc.requirement_specifier("papercore[retrieval]>=0.2 ; python_version>'3'") == ">=0.2"


def test_no_relative_links_in_package_readmes():
    for directory in PACKAGE_DIRS:
        readme = directory / "README.md"
        if readme.exists():
            assert rc.relative_links(readme.read_text()) == [], readme
