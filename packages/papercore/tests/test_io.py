import json

import pytest

from papercore.errors import JSONLError, MalformedInputError
from papercore.io import append_jsonl, atomic_write, read_jsonl, read_table, write_json, write_jsonl


def test_jsonl_round_trip(tmp_path):
    rows = [{"a": 1, "text": "héllo"}, {"a": 2, "text": "世界"}]
    path = tmp_path / "x.jsonl"
    assert write_jsonl(path, rows) == 2
    assert read_jsonl(path) == rows


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(JSONLError) as info:
        read_jsonl(path)
    assert info.value.line == 3  # blank line 2 is skipped but still counted
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_jsonl_non_object_and_missing_key(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(JSONLError, match="line 2: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_text('{"text": "ok"}\n{"label": 1}\n', encoding="utf-8")
    with pytest.raises(JSONLError, match=r"line 2: missing required key\(s\) \['text'\]"):
        read_jsonl(path, required=["text"])


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="JSONL file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"v": 1}])

    def rows():
        yield {"v": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"v": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_atomic_write_binary_and_json(tmp_path):
    with atomic_write(tmp_path / "b.bin", "wb") as fh:
        fh.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json(tmp_path / "d" / "x.json", {"k": {1, 2}})
    assert json.loads((tmp_path / "d" / "x.json").read_text()) == {"k": [1, 2]}


def test_append_jsonl_resumes(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"i": 0}])
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]


def test_read_table_csv_json_and_missing_columns(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello,1\nworld,0\n", encoding="utf-8")
    assert read_table(tmp_path / "t.csv", required=["text", "label"]) == [
        {"text": "hello", "label": "1"},
        {"text": "world", "label": "0"},
    ]
    with pytest.raises(MalformedInputError, match=r"missing required column\(s\) \['query'\]"):
        read_table(tmp_path / "t.csv", required=["query"])
    (tmp_path / "t.json").write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(MalformedInputError, match="expected a JSON list of objects"):
        read_table(tmp_path / "t.json")
    with pytest.raises(MalformedInputError, match=r"unsupported file type '\.xml'"):
        read_table(tmp_path / "t.xml")


@pytest.mark.parametrize(
    "name, content, match",
    [
        (
            "t.csv",
            "text,label\nhello,1\nworld\n",
            r"t\.csv, line 3: no value for column\(s\) \['label'\]",
        ),
        ("t.csv", "text,label\nhello,1,extra\n", r"line 2: 3 fields, the header has 2"),
        ("t.tsv", "text\tlabel\nhello\t1\n", None),
        ("t.json", '[{"text": "a", "label": 1}, 7]', r"entry 1 is a int, expected an object"),
        (
            "t.json",
            '[{"text": "a", "label": 1}, {"text": "b"}]',
            r"entry 1: missing required column\(s\) \['label'\]",
        ),
        ("t.json", '[{"text": "a",', r"invalid JSON at line 1, column \d+"),
        ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"line 2.*missing required key"),
    ],
)
def test_read_table_checks_every_record(tmp_path, name, content, match):
    (tmp_path / name).write_text(content, encoding="utf-8")
    if match is None:
        assert read_table(tmp_path / name, required=["text", "label"]) == [
            {"text": "hello", "label": "1"}
        ]
        return
    with pytest.raises(MalformedInputError, match=match):
        read_table(tmp_path / name, required=["text", "label"])


def test_atomic_write_gives_new_files_the_umask_mode_and_keeps_an_old_files_mode(tmp_path):
    import os
    import stat

    old_mask = os.umask(0o027)
    try:
        write_json(tmp_path / "new.json", {"a": 1})
        with atomic_write(tmp_path / "new.bin", "wb") as fh:
            fh.write(b"x")
        for name in ("new.json", "new.bin"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640  # 0o666 & ~0o027
        os.umask(0o022)
        write_jsonl(tmp_path / "other.jsonl", [{"a": 1}])
        assert stat.S_IMODE((tmp_path / "other.jsonl").stat().st_mode) == 0o644
        secret = tmp_path / "secret.json"
        secret.write_text("{}")
        secret.chmod(0o600)
        write_json(secret, {"token": "x"})  # rewriting keeps the file's own permissions
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        os.umask(old_mask)
