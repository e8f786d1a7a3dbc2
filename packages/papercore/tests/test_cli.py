import pytest
import typer
from typer.testing import CliRunner

import papercore.demo as demo_mod
from papercore.cli import app, clean_errors
from papercore.demo import DemoResult, run_demos
from papercore.errors import JSONLError

runner = CliRunner()


class _EP:
    """Stands in for an importlib EntryPoint: ``load()`` returns the demo callable."""

    def __init__(self, fn):
        self.fn = fn

    def load(self):
        return self.fn


def _good():
    return DemoResult(method="m", baseline="b", metric="acc", value=0.9, baseline_value=0.6)


def _bad():
    raise RuntimeError("boom")


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "demo" in res.output and "info" in res.output


def test_demo_with_no_packages_says_so(monkeypatch):
    monkeypatch.setattr(demo_mod, "discover_demos", lambda group=demo_mod.DEMO_GROUP: {})
    res = runner.invoke(app, ["demo"])
    assert res.exit_code == 0
    assert "No method packages with a demo are installed yet" in res.output


def test_demo_table_and_failures(monkeypatch):
    monkeypatch.setattr(
        demo_mod,
        "discover_demos",
        lambda group=demo_mod.DEMO_GROUP: {"good": _EP(_good), "bad": _EP(_bad)},
    )
    res = runner.invoke(app, ["demo", "good"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "good" in res.output and "1.5×" in res.output  # 0.9 / 0.6
    res = runner.invoke(app, ["demo"], terminal_width=200)
    assert res.exit_code == 1 and "FAILED bad: RuntimeError: boom" in res.output
    res = runner.invoke(app, ["demo", "nope"], terminal_width=200)
    assert res.exit_code == 2 and "no demo installed for ['nope']" in res.output


def test_demo_table_shows_floor_and_kind(monkeypatch):
    """Issue 12: a ratio against a baseline that learned nothing is labelled a pipeline check."""
    from papercore.demo import demo_kind

    def claim():
        return DemoResult(
            "m",
            "b",
            "macro-F1",
            0.6,
            0.5,
            floor=1 / 6,
            floor_name="chance",
            kind=demo_kind(0.5, 1 / 6, min_gain=0.1),
        )

    def check():
        return DemoResult(
            "Quad",
            "Triplet",
            "nDCG@10",
            0.22,
            0.09,
            floor=0.13,
            floor_name="zero-shot",
            kind=demo_kind(0.09, 0.13, min_gain=0.02),
        )

    monkeypatch.setattr(
        demo_mod,
        "discover_demos",
        lambda group=demo_mod.DEMO_GROUP: {"a": _EP(claim), "z": _EP(check), "old": _EP(_good)},
    )
    res = runner.invoke(app, ["demo"], terminal_width=240)
    assert res.exit_code == 0, res.output
    rows = {ln.split("│")[1].strip(): ln for ln in res.output.splitlines() if ln.count("│") > 5}
    assert "claim" in rows["a"] and "0.1667 (chance)" in rows["a"] and "1.2×" in rows["a"]
    assert (
        "pipeline check" in rows["z"] and "0.13 (zero-shot)" in rows["z"] and "2.44×" in rows["z"]
    )
    assert "claim" in rows["old"] and "—" in rows["old"]  # a demo that reports no floor
    assert (
        "z: pipeline check, not a claim: the baseline (Triplet, 0.09) does not clearly beat its floor (zero-shot, 0.13)"
        in res.output
    )
    assert "a: pipeline check" not in res.output


def test_demo_kind_and_validation():
    from papercore.demo import demo_kind
    from papercore.errors import MalformedInputError

    assert demo_kind(0.5, 0.4, min_gain=0.1) == "claim"
    assert demo_kind(0.45, 0.4, min_gain=0.1) == "pipeline check"
    assert demo_kind(1.0, 2.0, min_gain=0.5, higher_is_better=False) == "claim"  # e.g. a loss
    assert demo_kind(2.0, 1.0, min_gain=0.0, higher_is_better=False) == "pipeline check"
    with pytest.raises(MalformedInputError, match="min_gain must be >= 0, got -1"):
        demo_kind(1.0, 0.0, min_gain=-1)
    with pytest.raises(MalformedInputError, match=r"kind must be one of .*got 'headline'"):
        DemoResult("m", "b", "x", 1.0, 1.0, kind="headline")
    with pytest.raises(MalformedInputError, match="needs a floor_name"):
        DemoResult("m", "b", "x", 1.0, 1.0, floor=0.5)


def test_run_demos_rejects_wrong_return_type():
    (r,) = run_demos({"x": _EP(lambda: 3)})
    assert isinstance(r, demo_mod.DemoFailure) and "expected DemoResult" in r.error


def test_ratio_edge_cases():
    assert DemoResult("m", "b", "x", 0.0, 0.0).ratio == 1.0
    assert DemoResult("m", "b", "x", 1.0, 0.0).ratio == float("inf")


def test_clean_errors_exit_code_2(capsys):
    @clean_errors
    def cmd():
        raise JSONLError("data.jsonl", 7, "invalid JSON")

    with pytest.raises(typer.Exit) as info:
        cmd()
    assert info.value.exit_code == 2
    assert "data.jsonl, line 7: invalid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    "exc",
    [
        PermissionError(13, "Permission denied", "/ro/out.jsonl"),
        OSError(28, "No space left on device"),
        IsADirectoryError(21, "Is a directory", "out"),
    ],
)
def test_clean_errors_every_os_error_is_one_line(capsys, monkeypatch, exc):
    """A read-only folder, a full disk, a directory given as a file: one line, exit code 2."""

    @clean_errors
    def cmd():
        raise exc

    monkeypatch.delenv("PAPERCORE_TRACEBACK", raising=False)
    with pytest.raises(typer.Exit) as info:
        cmd()
    err = capsys.readouterr().err
    assert info.value.exit_code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"{type(exc).__name__}: {exc}" in err.replace("\n", "")


def test_clean_errors_traceback_on_request(capsys, monkeypatch):
    @clean_errors
    def cmd(verbose: bool = False):
        {}["missing-key"]  # a bug, not bad input

    monkeypatch.delenv("PAPERCORE_TRACEBACK", raising=False)
    with pytest.raises(typer.Exit):
        cmd()
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0  # one line
    assert "KeyError: missing-key (set PAPERCORE_TRACEBACK=1 for the traceback)" in err
    assert "Traceback" not in err
    for how in ("env", "verbose"):
        if how == "env":
            monkeypatch.setenv("PAPERCORE_TRACEBACK", "1")
        with pytest.raises(typer.Exit) as info:
            cmd(verbose=how == "verbose")
        err = capsys.readouterr().err
        assert info.value.exit_code == 2
        assert "Traceback (most recent call last)" in err and 'in cmd\n    {}["missing-key"]' in err
        assert err.rstrip().splitlines()[-1] == "error: KeyError: missing-key"
        monkeypatch.delenv("PAPERCORE_TRACEBACK", raising=False)


def test_clean_errors_prints_brackets_literally(capsys):
    @clean_errors
    def cmd():
        raise JSONLError("x.jsonl", 1, "missing required key(s) ['[bold]text']")

    with pytest.raises(typer.Exit):
        cmd()
    assert "missing required key(s) ['[bold]text']" in capsys.readouterr().err


def test_make_app_has_version_and_help():
    from typer.testing import CliRunner

    from papercore.cli import make_app

    sub = make_app("papercore", "A package CLI.")

    @sub.command()
    def hello() -> None:
        """Say hello."""

    res = CliRunner().invoke(sub, ["--version"])
    assert res.exit_code == 0 and res.output.strip().startswith("papercore 0.")
    res = CliRunner().invoke(sub, ["--help"])
    assert res.exit_code == 0 and "A package CLI." in res.output and "hello" in res.output
