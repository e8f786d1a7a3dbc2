"""The README's Python blocks run as written (model names swapped for tiny local models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_three_quickstart_blocks():
    assert len(BLOCKS) == 3
    for block in BLOCKS:
        compile(block, "README.md", "exec")  # no syntax error


@pytest.fixture(scope="module")
def model_names(tiny_bert_dir, tmp_path_factory):
    from papercore.testing import tiny_sentence_transformer

    st_dir = tmp_path_factory.mktemp("tiny-st")
    tiny_sentence_transformer(st_dir)
    return {
        '"bert-base-uncased"': repr(str(tiny_bert_dir)),
        '"sentence-transformers/all-MiniLM-L6-v2"': repr(str(st_dir)),
    }


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, model_names, tmp_path, monkeypatch):
    code = BLOCKS[i]
    names = [n for n in model_names if n in code]
    assert names, "every block loads a model by name"
    for name in names:
        code = code.replace(name, model_names[name])
    monkeypatch.chdir(tmp_path)  # the blocks write out/, st-out/, deepct/ relative to the cwd
    exec(compile(code, f"README.md block {i}", "exec"), {"__name__": "readme"})
    written = {p.name for p in tmp_path.iterdir()}
    assert written & {"out", "st-out", "deepct"}, written
