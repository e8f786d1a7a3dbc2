"""Issue 21 §2: never lose or overwrite user data; validate before writing or loading anything."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentic_sql.cli import app
from agentic_sql.data import make_synthetic_task_suite
from agentic_sql.errors import DatabaseNotFoundError, UnsafeOutputDirError
from agentic_sql.synth import SUITE_MARKER
from agentic_sql.train import TrainConfig, _load_dataset, build_trainer, load_train_config

runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def user_bird(tmp_path, bird_dir) -> Path:
    """A user's BIRD folder: split files and databases side by side (the layout that got clobbered)."""
    root = tmp_path / "my-bird"
    shutil.copytree(bird_dir / "dev_databases", root)
    shutil.copy(bird_dir / "dev.json", root / "dev.json")
    shutil.copy(bird_dir / "dev.json", root / "train.json")
    return root


def test_synth_refuses_a_folder_with_a_users_dev_json(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "dev.json").write_text('[{"mine": true}]')
    res = runner.invoke(app, ["synth", "--output", str(out), "--n-questions", "10"])
    assert res.exit_code != 0
    assert "refusing to write" in res.output and "not empty" in res.output
    assert json.loads((out / "dev.json").read_text()) == [{"mine": True}]
    assert sorted(p.name for p in out.iterdir()) == ["dev.json"]


def test_synth_rewrites_its_own_suite_and_writes_into_new_or_empty_folders(tmp_path):
    out = tmp_path / "suite"
    for _ in range(2):  # a new folder, then the marked suite folder again
        res = runner.invoke(
            app, ["synth", "--output", str(out), "--n-dbs", "1", "--n-questions", "6"]
        )
        assert res.exit_code == 0, res.output
        assert (out / SUITE_MARKER).is_file() and (out / "dev.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    make_synthetic_task_suite(n_dbs=1, n_questions=6, out_dir=empty)
    assert (empty / SUITE_MARKER).is_file()


def test_library_refuses_before_writing_anything(user_bird):
    before = _snapshot(user_bird)
    with pytest.raises(UnsafeOutputDirError, match=SUITE_MARKER):
        make_synthetic_task_suite(n_dbs=1, n_questions=6, out_dir=user_bird)
    assert _snapshot(user_bird) == before
    file_path = user_bird / "dev.json"
    with pytest.raises(UnsafeOutputDirError, match="is a file"):
        make_synthetic_task_suite(n_dbs=1, n_questions=6, out_dir=file_path)


def test_train_config_with_db_root_but_no_data_never_writes_the_suite(tmp_path, user_bird):
    before = _snapshot(user_bird)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {"model": "org/model", "db_root": str(user_bird), "output_dir": str(tmp_path / "run")}
        )
    )
    with pytest.raises(ValueError, match=r"db_root is set .* but data is not"):
        load_train_config(cfg_file)
    # the library path, without the YAML loader, refuses too
    cfg = TrainConfig(model="org/model", db_root=str(user_bird), output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="data is not"):
        _load_dataset(cfg)
    # an explicit synthetic suite aimed at the user's folder is refused by the folder check
    cfg = TrainConfig(
        model="org/model", db_root=str(user_bird), data={"kind": "synthetic", "n_questions": 6}
    )
    with pytest.raises(UnsafeOutputDirError):
        _load_dataset(cfg)
    res = runner.invoke(app, ["train", "--config", str(cfg_file)])
    assert res.exit_code != 0 and "data is not" in res.output
    assert _snapshot(user_bird) == before
    assert not (tmp_path / "run").exists()


def test_eval_db_root_without_data_never_writes_the_suite(tmp_path, user_bird):
    before = _snapshot(user_bird)
    res = runner.invoke(
        app, ["eval", "-m", "org/model", "--db-root", str(user_bird), "--max-turns", "1"]
    )
    assert res.exit_code != 0
    assert "without --data" in res.output
    assert _snapshot(user_bird) == before


def test_eval_db_root_of_a_synthetic_suite_reads_its_dev_json(tmp_path):
    from agentic_sql.cli import _eval_split

    _, root = make_synthetic_task_suite(n_dbs=1, n_questions=6, out_dir=tmp_path / "s")
    before = _snapshot(Path(root))
    ds, got_root = _eval_split(None, Path(root), seed=0)
    assert len(ds) == 6 and got_root == Path(root)
    assert _snapshot(Path(root)) == before


def test_unknown_grpo_key_is_refused_before_anything_is_written(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {
                "model": "org/model",
                "output_dir": str(tmp_path / "run"),
                "grpo": {"learning_rte": 1e-6, "num_generations": 2},
            }
        )
    )
    with pytest.raises(ValueError, match=r"\['learning_rte'\].*did you mean 'learning_rate'"):
        load_train_config(cfg_file)
    res = runner.invoke(app, ["train", "--config", str(cfg_file)])
    assert res.exit_code != 0 and "learning_rte" in res.output
    assert not (tmp_path / "run").exists()
    cfg = TrainConfig(model="org/model", output_dir=str(tmp_path / "run"), grpo={"lr": 1})
    with pytest.raises(ValueError, match="'lr'"):
        build_trainer(cfg)
    assert not (tmp_path / "run").exists()


def test_bad_model_is_refused_before_anything_is_written(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump({"model": "./no/such/model", "output_dir": str(tmp_path / "run")})
    )
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        load_train_config(cfg_file)
    res = runner.invoke(app, ["eval", "-m", str(tmp_path / "missing-model"), "--max-turns", "1"])
    assert res.exit_code != 0 and "not an existing folder" in res.output
    assert not (tmp_path / "run").exists()


def test_unknown_db_id_is_refused_before_the_model_is_loaded(tmp_path, bird_db_root):
    rows = [
        {"prompt": [{"role": "user", "content": "q"}], "db_id": "toy_shop", "gold_sql": "SELECT 1"},
        {
            "prompt": [{"role": "user", "content": "q2"}],
            "db_id": "no_such_db",
            "gold_sql": "SELECT 1",
        },
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(
        model="org/model-that-is-never-loaded",
        output_dir=str(tmp_path / "run"),
        db_root=str(bird_db_root),
        data={"kind": "jsonl", "path": str(data)},
    )
    with pytest.raises(DatabaseNotFoundError, match=r"training row 1 .*'no_such_db'"):
        build_trainer(cfg)
    assert not (tmp_path / "run").exists()
