import pytest
import torch

from papercore.errors import ModelNotAvailableError
from papercore.models import load_model, load_tokenizer, offline_mode, resolve_dtype


def test_plugin_forces_offline():
    assert offline_mode()


def test_load_model_from_local_dir_matches_original(tiny_model_dir, tiny_llama, tiny_tokenizer):
    model = load_model(tiny_model_dir, dtype="float32", device="cpu")
    tok = load_tokenizer(tiny_model_dir)
    ids = tok(["count: 1 2 3"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, tiny_llama(ids).logits, atol=1e-5)
    assert tok.chat_template == tiny_tokenizer.chat_template
    assert not model.training


def test_load_encoder_task(tiny_bert_dir):
    enc = load_model(tiny_bert_dir, task="encoder", dtype="float32", device="cpu")
    assert type(enc).__name__ == "BertModel"


def test_missing_local_path_is_clear(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_model(tmp_path / "no" / "such" / "model")


def test_file_instead_of_dir_is_clear(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotAvailableError, match="is a file; expected a model directory"):
        load_model(f)


def test_unknown_hub_name_offline_is_clear():
    with pytest.raises(
        ModelNotAvailableError, match=r"not in the local Hugging Face cache.*HF_HUB_OFFLINE"
    ):
        load_tokenizer("some-org/definitely-not-cached-model")


def test_bad_dtype_and_task():
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_dtype("float8")
    with pytest.raises(ValueError, match="unknown task 'vision'"):
        load_model("x", task="vision")


def test_load_sentence_transformer_offline(minilm_path, tmp_path):
    pytest.importorskip("sentence_transformers")
    from papercore.models import load_sentence_transformer

    model = load_sentence_transformer(minilm_path, device="cpu")
    emb = model.encode(["a telescope tracks a comet"], convert_to_numpy=True)
    assert emb.shape == (1, 384)
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_sentence_transformer(tmp_path / "no" / "such" / "encoder")
    with pytest.raises(ModelNotAvailableError, match="not in the local Hugging Face cache"):
        load_sentence_transformer("some-org/definitely-not-cached-encoder")


def test_partly_existing_relative_path_never_contacts_the_hub(tmp_path, monkeypatch):
    """ "models/tiny" with ./models present is a local path: a clear error, no hub request."""
    import transformers

    calls = []

    def fake_from_pretrained(name, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        raise OSError(f"{name} not found")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)  # downloads would be allowed
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"'models' exists in .*hub was not contacted"):
        load_tokenizer("models/tiny", allow_download=True)
    assert calls == [True]  # the local cache only
    from pathlib import Path

    for name in ("./tiny", "../tiny", "~/no/such/model", Path("org/name")):
        with pytest.raises(ModelNotAvailableError, match="does not exist"):
            load_tokenizer(name, allow_download=True)
    assert calls == [True]
    # a plain hub id (no local part) still goes to the hub when downloads are allowed
    with pytest.raises(ModelNotAvailableError, match="could not be downloaded"):
        load_tokenizer("some-org/model", allow_download=True)
    assert calls == [True, True, False]
