"""Check, build and install-test one workspace distribution before it is published.

The release workflow (``.github/workflows/release.yml``) and its dry run in CI
(``.github/workflows/ci.yml``, job ``release-dry-run``) run the same steps from here::

    python scripts/release_check.py --tag quadbert-v0.1.0            # what release.yml runs
    python scripts/release_check.py quadbert --dry-run               # what CI runs on every PR

Steps (``--steps``; default: all of them, in a dry run all but ``test``):

``check``
    the tag / requested version equals the version in ``packages/<dir>/pyproject.toml`` exactly;
    ``CHANGELOG.md`` has exactly one ``## <version>`` heading, it is the first ``##`` heading and
    it does not say "unreleased"; the version is not a development / pre-release version; no
    requirement on a workspace sibling names a development version.
``build``
    ``uv build --package <dist>`` into ``--dist-dir``. In a dry run, the workspace siblings the
    package needs (transitively) are built too, into ``--find-links`` (default
    ``<dist-dir>/siblings``).
``install``
    a fresh virtual environment gets the built wheel and nothing else from this checkout. Release:
    the only index is PyPI, so every sibling (papercore, ...) must already be released there
    (checked first, with a message naming what to release first); no ``--find-links``. Dry run:
    PyPI for third-party packages plus a local find-links directory holding only the built
    siblings, pinned to their local versions. Then ``import <module>`` (its ``__version__`` must be
    the version) and ``<script> --help`` for every console script.
``test``
    the package's extras and its ``dev`` dependency group are installed into that environment and
    its tests run against the installed wheel (not the source tree).

In a dry run of a ``.dev`` version the release-only rules (not a ``.dev`` version, heading without
"unreleased", released sibling requirements) are reported but not fatal; consistency rules (the
changelog has a heading for the declared version, on top, once) always are. Exit code 0 when every
fatal check passed, 1 otherwise, 2 for bad arguments.

Only the standard library is used, so the script runs under any Python >= 3.11 with ``uv`` on
PATH.
"""

from __future__ import annotations

import argparse
import email.parser
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("release_check")

ROOT = Path(__file__).resolve().parents[1]
PYPI = "https://pypi.org/simple"
STEPS = ("check", "build", "install", "test")

# A development or pre-release segment in a PEP 440 version or specifier ("0.2.0.dev0", "1.0rc1").
_PRE_DEV = re.compile(r"(?i)(\.?dev\d*|(?<=\d)(a|b|c|rc|alpha|beta|pre|preview)\d*)(?![a-z])")
_HEADING = re.compile(r"^##\s+(?P<version>\S+)(?P<rest>.*)$")
_REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?")
# Files that must never reach a published artifact (editor/patch leftovers, caches, bench caches).
STRAY_PATTERNS = (
    re.compile(r"\.(orig|rej|pyc|pyo|swp)$"),
    re.compile(r"(^|/)__pycache__(/|$)"),
    re.compile(r"(^|/)\.pytest_cache(/|$)"),
    re.compile(r"(^|/)\.ruff_cache(/|$)"),
    re.compile(r"(^|/)\.ipynb_checkpoints(/|$)"),
    re.compile(r"(^|/)bench/results/cache(/|$)"),
    re.compile(r"(^|/)\.DS_Store$"),
)
# uv_build >= 0.12 rewrites pyproject.toml to TOML 1.0 in every sdist and keeps the original
# beside it as pyproject.toml.orig (by design, not configurable): that one file is expected.
SDIST_ALLOWED_ORIG = "pyproject.toml.orig"


class ReleaseCheckError(ValueError):
    """Bad arguments or an unusable workspace (unknown distribution, unreadable pyproject)."""


@dataclass(frozen=True)
class Package:
    """One workspace member: its folder, distribution name, version and requirements."""

    directory: Path
    name: str
    version: str
    requirements: tuple[str, ...]  # [project].dependencies + every optional dependency
    base_requirements: tuple[str, ...]  # [project].dependencies only
    extras: tuple[str, ...]
    scripts: tuple[str, ...]
    dev_group: tuple[str, ...]

    @property
    def module(self) -> str:
        """Import name: the ``module-name`` of ``[tool.uv.build-backend]``, else the dist name."""
        data = tomllib.loads((self.directory / "pyproject.toml").read_text())
        backend = data.get("tool", {}).get("uv", {}).get("build-backend", {})
        module = backend.get("module-name")
        return module if isinstance(module, str) else self.name.replace("-", "_")

    @property
    def stem(self) -> str:
        """File-name stem of its wheel and sdist (``agentic-sql`` -> ``agentic_sql``)."""
        return normalize(self.name).replace("-", "_")


@dataclass
class Report:
    """Outcome of the checks: fatal problems fail the run, notes are only printed."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_prerelease(version_or_specifier: str) -> bool:
    """True when a version or specifier (``0.2.0.dev0``, ``>=1.0rc1``) names a pre-release."""
    return bool(_PRE_DEV.search(version_or_specifier))


def requirement_specifier(requirement: str) -> str:
    """The version specifier of a PEP 508 requirement (no name, extras or marker)."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ReleaseCheckError(f"expected a PEP 508 requirement, got {requirement!r}")
    return requirement[match.end() :].split(";", 1)[0].strip()


def requirement_name(requirement: str) -> str:
    """Normalised project name of a PEP 508 requirement string."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ReleaseCheckError(f"expected a PEP 508 requirement, got {requirement!r}")
    return normalize(match.group("name"))


def parse_tag(tag: str) -> tuple[str, str]:
    """Split a release tag ``<dist>-v<version>`` into ``(dist, version)``."""
    dist, sep, version = tag.rpartition("-v")
    if not sep or not dist or not version or not version[0].isdigit():
        raise ReleaseCheckError(
            f"expected a tag of the form <dist>-v<version> (e.g. papercore-v0.2.0), got {tag!r}"
        )
    return dist, version


def load_package(directory: Path) -> Package:
    """Read ``directory/pyproject.toml`` into a :class:`Package`."""
    path = directory / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text())
        project = data["project"]
        name, version = project["name"], project["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ReleaseCheckError(
            f"{path}: expected a pyproject.toml with [project] name and version, got {exc!r}"
        ) from exc
    base = tuple(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    every = base + tuple(req for reqs in optional.values() for req in reqs)
    dev = tuple(r for r in data.get("dependency-groups", {}).get("dev", []) if isinstance(r, str))
    return Package(
        directory=directory,
        name=name,
        version=version,
        requirements=every,
        base_requirements=base,
        extras=tuple(optional),
        scripts=tuple(project.get("scripts", {})),
        dev_group=dev,
    )


def workspace(root: Path = ROOT) -> dict[str, Package]:
    """Every workspace member under ``root/packages``, keyed by normalised distribution name."""
    members = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        pkg = load_package(pyproject.parent)
        members[normalize(pkg.name)] = pkg
    return members


def find_package(dist: str, members: dict[str, Package]) -> Package:
    """A member by distribution name or by folder name (``e-grm`` finds ``egrm-reward``)."""
    key = normalize(dist)
    if key in members:
        return members[key]
    for pkg in members.values():
        if normalize(pkg.directory.name) == key:
            return pkg
    raise ReleaseCheckError(
        f"expected one of the workspace distributions {sorted(members)}, got {dist!r}"
    )


def sibling_requirements(pkg: Package, members: dict[str, Package], *, base_only: bool = False):
    """The requirements of ``pkg`` that name another workspace member."""
    reqs = pkg.base_requirements if base_only else pkg.requirements
    return [
        r
        for r in reqs
        if requirement_name(r) in members and normalize(pkg.name) != requirement_name(r)
    ]


def sibling_closure(
    pkg: Package, members: dict[str, Package], *, base_only: bool = False
) -> list[Package]:
    """Workspace members ``pkg`` needs, transitively (without ``pkg`` itself), sorted by name."""
    seen: dict[str, Package] = {}
    todo = [pkg]
    while todo:
        current = todo.pop()
        for req in sibling_requirements(current, members, base_only=base_only):
            key = requirement_name(req)
            if key not in seen and key != normalize(pkg.name):
                seen[key] = members[key]
                todo.append(members[key])
    return [seen[k] for k in sorted(seen)]


def changelog_headings(text: str) -> list[tuple[int, str, str]]:
    """``(line number, version token, rest of line)`` of every ``## `` heading."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _HEADING.match(line.rstrip())
        if match:
            out.append((lineno, match.group("version"), match.group("rest").strip()))
    return out


def check_release(
    pkg: Package,
    version: str,
    members: dict[str, Package],
    *,
    dry_run: bool = False,
    changelog: str | None = None,
) -> Report:
    """Version, changelog and sibling-requirement rules for releasing ``pkg`` at ``version``.

    ``changelog`` overrides the text of ``CHANGELOG.md`` (tests). In a dry run of a development
    version, release-only rules become notes.
    """
    report = Report()
    lenient = dry_run and is_prerelease(pkg.version)
    release_rule = report.notes.append if lenient else report.problems.append

    if version != pkg.version:
        report.problems.append(
            f"{pkg.name}: the tag / requested version is {version!r} but "
            f"{pkg.directory.name}/pyproject.toml declares {pkg.version!r} (they must be equal)"
        )
    if is_prerelease(pkg.version):
        release_rule(
            f"{pkg.name} {pkg.version} is a development / pre-release version and cannot be "
            "released: set the release version in pyproject.toml first"
        )

    if changelog is None:
        path = pkg.directory / "CHANGELOG.md"
        if not path.is_file():
            report.problems.append(f"{pkg.name}: expected {path}, found no such file")
            return report
        changelog = path.read_text()
    headings = changelog_headings(changelog)
    mine = [h for h in headings if h[1] == pkg.version]
    if not mine:
        found = [f"## {v} {rest}".strip() for _, v, rest in headings[:3]]
        report.problems.append(
            f"{pkg.name}: CHANGELOG.md needs a '## {pkg.version}' heading for the declared "
            f"version; its first headings are {found}"
        )
    elif len(mine) > 1:
        report.problems.append(
            f"{pkg.name}: CHANGELOG.md has {len(mine)} '## {pkg.version}' headings "
            f"(lines {[h[0] for h in mine]}); expected exactly one"
        )
    else:
        lineno, _, rest = mine[0]
        if headings[0][0] != lineno:
            report.problems.append(
                f"{pkg.name}: '## {pkg.version}' (line {lineno}) must be the first '## ' heading "
                f"of CHANGELOG.md; line {headings[0][0]} is '## {headings[0][1]} {headings[0][2]}'"
            )
        if "unreleased" in rest.lower():
            release_rule(
                f"{pkg.name}: CHANGELOG.md heading '## {pkg.version} {rest}' says unreleased: "
                "date it (e.g. '## 0.2.0 (2026-12-01)') in the release commit"
            )

    for req in sibling_requirements(pkg, members):
        if is_prerelease(requirement_specifier(req)):
            release_rule(
                f"{pkg.name}: requirement {req!r} names a development version of a workspace "
                "sibling; a release must require released versions (e.g. 'papercore>=0.2.0')"
            )
    return report


# ------------------------------------------------------------------ artifacts


def wheel_path(pkg: Package, dist_dir: Path) -> Path:
    """The one wheel of ``pkg`` at its declared version in ``dist_dir``."""
    found = sorted(dist_dir.glob(f"{pkg.stem}-{pkg.version}-*.whl"))
    if len(found) != 1:
        raise ReleaseCheckError(
            f"expected one wheel {pkg.stem}-{pkg.version}-*.whl in {dist_dir}, got "
            f"{[p.name for p in found]}"
        )
    return found[0]


def sdist_path(pkg: Package, dist_dir: Path) -> Path:
    """The sdist of ``pkg`` at its declared version in ``dist_dir``."""
    path = dist_dir / f"{pkg.stem}-{pkg.version}.tar.gz"
    if not path.is_file():
        raise ReleaseCheckError(f"expected the sdist {path}, found no such file")
    return path


def wheel_files(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def sdist_files(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def wheel_metadata(path: Path):
    """The parsed ``METADATA`` of a wheel (an ``email.message.Message``)."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def stray_files(names: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """Archive members that should not be published (see ``STRAY_PATTERNS``)."""
    return [n for n in names if n not in allowed and any(p.search(n) for p in STRAY_PATTERNS)]


_RELATIVE_LINK = re.compile(
    r"\]\((?!https?://|mailto:)([^)\s]+)[^)]*\)|\bsrc=\"(?!https?://)([^\"]+)\""
)


def relative_links(markdown: str) -> list[str]:
    """Link / image targets that are not absolute URLs (they break on PyPI)."""
    return [a or b for a, b in _RELATIVE_LINK.findall(markdown)]


def check_artifacts(pkg: Package, dist_dir: Path) -> Report:
    """LICENSE in wheel and sdist, PEP 639 metadata, project URLs, classifiers, no strays."""
    report = Report()
    wheel, sdist = wheel_path(pkg, dist_dir), sdist_path(pkg, dist_dir)
    wnames, snames = wheel_files(wheel), sdist_files(sdist)
    top = f"{pkg.stem}-{pkg.version}"
    if f"{top}.dist-info/licenses/LICENSE" not in wnames:
        report.problems.append(f"{wheel.name}: no {top}.dist-info/licenses/LICENSE")
    if f"{top}/LICENSE" not in snames:
        report.problems.append(f"{sdist.name}: no {top}/LICENSE")
    allowed = (f"{top}/{SDIST_ALLOWED_ORIG}",)  # written by uv_build itself, see above
    for archive, names in ((wheel.name, wnames), (sdist.name, snames)):
        for stray in stray_files(names, allowed if archive == sdist.name else ()):
            report.problems.append(f"{archive}: stray file {stray}")
    meta = wheel_metadata(wheel)
    if meta.get("License-Expression") != "Apache-2.0":
        report.problems.append(
            f"{wheel.name}: License-Expression should be 'Apache-2.0', got {meta.get('License-Expression')!r}"
        )
    urls = {
        u.split(",", 1)[0].strip(): u.split(",", 1)[1].strip()
        for u in meta.get_all("Project-URL", [])
    }
    for label in ("Homepage", "Repository", "Issues", "Changelog"):
        if not urls.get(label, "").startswith("https://"):
            report.problems.append(f"{wheel.name}: Project-URL {label} missing (got {urls})")
    classifiers = meta.get_all("Classifier", [])
    for needed in (
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ):
        if needed not in classifiers:
            report.problems.append(f"{wheel.name}: classifier {needed!r} missing")
    if not any(c.startswith("Development Status ::") for c in classifiers):
        report.problems.append(f"{wheel.name}: no 'Development Status ::' classifier")
    if any(c.startswith("License ::") for c in classifiers):
        report.problems.append(
            f"{wheel.name}: License :: classifiers are deprecated by PEP 639 next to a license expression"
        )
    links = relative_links(meta.get_payload())
    if links:
        report.problems.append(f"{wheel.name}: README links that break on PyPI: {links}")
    return report


# ------------------------------------------------------------------ subprocess steps


def _env() -> dict[str, str]:
    """The environment for uv: no active venv, no index / find-links settings from outside."""
    env = dict(os.environ)
    for key in list(env):
        if key == "VIRTUAL_ENV" or key.startswith(
            ("UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX", "UV_FIND_LINKS", "PIP_")
        ):
            env.pop(key)
    return env


def run(cmd: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; raise ``RuntimeError`` with its output when it fails."""
    log.info("$ %s", " ".join(str(c) for c in cmd))
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(
            f"command failed ({res.returncode}): {' '.join(str(c) for c in cmd)}\n"
            f"--- stdout\n{res.stdout[-6000:]}\n--- stderr\n{res.stderr[-6000:]}"
        )
    return res


def build(pkg: Package, out_dir: Path) -> None:
    """``uv build --package <dist>`` (sdist, then a wheel from it) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run(["uv", "build", "--package", pkg.name, "--out-dir", str(out_dir)], cwd=ROOT)


def pypi_has(requirement: str, index_url: str, python_version: str) -> str | None:
    """The version PyPI would give for ``requirement`` alone, or None if it has none."""
    try:
        res = run_input(
            [
                "uv",
                "pip",
                "compile",
                "-",
                "--no-deps",
                "--no-header",
                "--no-annotate",
                "--no-config",
                "--default-index",
                index_url,
                "--python-version",
                python_version,
            ],
            requirement + "\n",
        )
    except RuntimeError as exc:
        log.info("%s is not satisfiable from %s: %s", requirement, index_url, str(exc)[-400:])
        return None
    pins = [ln for ln in res.stdout.splitlines() if "==" in ln]
    return pins[0].split("==", 1)[1].split(";")[0].strip() if pins else None


def run_input(cmd: list[str], stdin: str) -> subprocess.CompletedProcess:
    log.info("$ %s", " ".join(cmd))
    res = subprocess.run(
        cmd, input=stdin, env=_env(), capture_output=True, text=True, cwd=Path.home()
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}"
        )
    return res


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install(
    pkg: Package,
    members: dict[str, Package],
    wheel: Path,
    venv: Path,
    *,
    dry_run: bool,
    find_links: Path | None,
    constraints: list[Path],
    index_url: str,
    python: str,
) -> Report:
    """Fresh venv + the wheel; then ``import`` and ``--help`` for each console script."""
    report = Report()
    siblings = sibling_closure(pkg, members)
    if not dry_run:
        # (e): every sibling requirement must already be satisfiable from PyPI
        pyver = run(
            [python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]
        ).stdout.strip()
        for req in sibling_requirements(pkg, members):
            got = pypi_has(req.split(";")[0].strip(), index_url, pyver)
            if got is None:
                report.problems.append(
                    f"{pkg.name} {pkg.version} requires {req!r}, which {index_url} cannot satisfy: "
                    f"release {requirement_name(req)} first"
                )
        if report.problems:
            return report
    if venv.exists():
        shutil.rmtree(venv)
    run(["uv", "venv", "--quiet", "--no-config", "--python", python, str(venv)])
    py = venv_python(venv)
    cmd = [
        "uv",
        "pip",
        "install",
        "--quiet",
        "--no-config",
        "--python",
        str(py),
        "--default-index",
        index_url,
    ]
    only_binary = [pkg.name] + [s.name for s in siblings]
    cmd += ["--only-binary", ",".join(only_binary)]
    if dry_run and siblings:
        if find_links is None or not find_links.is_dir():
            raise ReleaseCheckError(
                f"a dry run of {pkg.name} needs --find-links: a directory holding the wheels of "
                f"{[s.name for s in siblings]}; got {find_links}"
            )
        pins = venv.parent / f"{venv.name}-workspace-pins.txt"
        pins.write_text("".join(f"{s.name}=={s.version}\n" for s in siblings))
        cmd += ["--find-links", str(find_links), "--constraint", str(pins)]
    for c in constraints:
        cmd += ["--constraint", str(c)]
    run([*cmd, str(wheel)], cwd=venv.parent)

    res = run(
        [str(py), "-c", f"import {pkg.module}; print({pkg.module}.__version__)"], cwd=venv.parent
    )
    if res.stdout.strip() != pkg.version:
        report.problems.append(
            f"import {pkg.module}: __version__ is {res.stdout.strip()!r}, expected {pkg.version!r}"
        )
    for script in pkg.scripts:
        exe = venv / ("Scripts" if os.name == "nt" else "bin") / script
        res = run([str(exe), "--help"], cwd=venv.parent)
        if "Usage" not in res.stdout:
            report.problems.append(f"{script} --help printed no usage: {res.stdout[:300]!r}")
    log.info(
        "installed %s %s alone into %s: import and CLI --help work", pkg.name, pkg.version, venv
    )
    return report


def run_tests_against_install(
    pkg: Package,
    members: dict[str, Package],
    wheel: Path,
    venv: Path,
    *,
    dry_run: bool,
    find_links: Path | None,
    constraints: list[Path],
    index_url: str,
) -> None:
    """Install the extras and the dev group into ``venv`` and run the package's tests there."""
    py = venv_python(venv)
    reqs = [f"{pkg.name}[{','.join(pkg.extras)}]" if pkg.extras else pkg.name, *pkg.dev_group]
    cmd = [
        "uv",
        "pip",
        "install",
        "--quiet",
        "--no-config",
        "--python",
        str(py),
        "--default-index",
        index_url,
    ]
    cmd += ["--find-links", str(wheel.parent)]  # the wheel itself (already installed, same version)
    if dry_run and find_links is not None and find_links.is_dir():
        cmd += ["--find-links", str(find_links)]
    for c in constraints:
        cmd += ["--constraint", str(c)]
    pins = venv.parent / f"{venv.name}-self-pin.txt"
    pins.write_text(f"{pkg.name}=={pkg.version}\n")
    run([*cmd, "--constraint", str(pins), *reqs], cwd=venv.parent)
    # from the repository root (its pytest configuration), importing the INSTALLED package: the
    # source tree is not on sys.path (src layout, --import-mode=importlib)
    tests = pkg.directory / "tests"
    res = subprocess.run(
        [str(py), "-m", "pytest", str(tests), "-p", "papercore.testing.plugin", "-q"],
        cwd=ROOT,
        env=_env(),
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"{pkg.name}: tests against the installed wheel failed ({res.returncode})"
        )
    where = run(
        [str(py), "-c", f"import {pkg.module}; print({pkg.module}.__file__)"]
    ).stdout.strip()
    if str(pkg.directory) in where:
        raise RuntimeError(f"{pkg.name}: tests imported the source tree ({where}), not the wheel")


# ------------------------------------------------------------------ command line


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at emit time (safe under pytest's capture)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stdout() -> None:
    """Progress lines on stdout, interleaved with the subprocesses' output; root logger untouched."""
    if not any(isinstance(h, _StdoutHandler) for h in log.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 ok, 1 a check failed, 2 bad usage)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dist", nargs="?", help="distribution or folder name under packages/")
    parser.add_argument("version", nargs="?", help="version to release (default: the declared one)")
    parser.add_argument("--tag", help="release tag <dist>-v<version> (instead of dist/version)")
    parser.add_argument(
        "--dry-run", action="store_true", help="CI mode: local siblings, lenient for .dev"
    )
    parser.add_argument(
        "--steps", help=f"comma-separated subset of {STEPS} (default: all; dry run: all but test)"
    )
    parser.add_argument(
        "--dist-dir", type=Path, default=ROOT / "dist", help="where the wheel/sdist are"
    )
    parser.add_argument("--find-links", type=Path, help="dry run: dir of built sibling wheels")
    parser.add_argument(
        "--constraint", type=Path, action="append", default=[], help="pip constraints"
    )
    parser.add_argument("--venv", type=Path, help="the fresh venv to create (default: a temp dir)")
    parser.add_argument("--index-url", default=PYPI, help=f"the one package index (default {PYPI})")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the fresh venv")
    args = parser.parse_args(argv)
    _log_to_stdout()

    try:
        if args.tag:
            if args.dist or args.version:
                raise ReleaseCheckError("give either --tag or <dist> [<version>], not both")
            dist, version = parse_tag(args.tag)
        elif args.dist:
            dist, version = args.dist, args.version
        else:
            raise ReleaseCheckError("expected <dist> [<version>] or --tag <dist>-v<version>")
        default_steps = STEPS[:-1] if args.dry_run else STEPS
        steps = [s.strip() for s in (args.steps or ",".join(default_steps)).split(",") if s.strip()]
        unknown = sorted(set(steps) - set(STEPS))
        if unknown:
            raise ReleaseCheckError(f"expected steps among {STEPS}, got {unknown}")
        members = workspace()
        pkg = find_package(dist, members)
    except ReleaseCheckError as exc:
        log.error("error: %s", exc)
        return 2
    version = version or pkg.version
    mode = "dry run" if args.dry_run else "release"
    log.info("%s of %s %s (steps: %s)", mode, pkg.name, version, ", ".join(steps))
    find_links = args.find_links or (args.dist_dir / "siblings")
    scratch: Path | None = None
    report = Report()

    def merge(r: Report) -> None:
        report.problems.extend(r.problems)
        report.notes.extend(r.notes)

    try:
        if "check" in steps:
            merge(check_release(pkg, version, members, dry_run=args.dry_run))
        if "build" in steps:
            build(pkg, args.dist_dir)
            if args.dry_run:
                for sib in sibling_closure(pkg, members):
                    build(sib, find_links)
        if {"build", "install", "test"} & set(steps):
            merge(check_artifacts(pkg, args.dist_dir))
        if report.ok and {"install", "test"} & set(steps):
            wheel = wheel_path(pkg, args.dist_dir)
            if args.venv is None:  # a throw-away venv, removed at the end
                scratch = Path(tempfile.mkdtemp(prefix=f"release-check-{pkg.stem}-"))
            venv = args.venv or scratch / "venv"
            common = dict(
                dry_run=args.dry_run,
                find_links=find_links,
                constraints=args.constraint,
                index_url=args.index_url,
            )
            merge(install(pkg, members, wheel, venv, python=args.python, **common))
            if report.ok and "test" in steps:
                run_tests_against_install(pkg, members, wheel, venv, **common)
    except (RuntimeError, ReleaseCheckError) as exc:
        report.problems.append(str(exc))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    for note in report.notes:
        log.warning("note (not fatal in a dry run of a .dev version): %s", note)
    for problem in report.problems:
        log.error("FAIL: %s", problem)
    log.info("%s of %s %s: %s", mode, pkg.name, version, "OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
