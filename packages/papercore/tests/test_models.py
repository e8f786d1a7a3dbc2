import pytest
import torch

from papercore.errors import ModelNotAvailableError
from papercore.models import load_model, load_tokenizer, offline_mode, resolve_dtype


def test_offline_fixture_turns_the_hub_off(papercore_offline):
    import huggingface_hub.constants

    assert offline_mode() and huggingface_hub.constants.HF_HUB_OFFLINE


def test_hub_offline_restores_the_environment(monkeypatch):
    """The plugin's offline switch puts back what was there, env vars and huggingface_hub's constant."""
    import os

    import huggingface_hub.constants

    from papercore.models import HUB_OFFLINE_ENV as OFFLINE_ENV
    from papercore.models import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    before = {k: os.environ.get(k) for k in OFFLINE_ENV}
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert huggingface_hub.constants.HF_HUB_OFFLINE is True
        assert offline_mode()
    assert {k: os.environ.get(k) for k in OFFLINE_ENV} == before
    assert "HF_HUB_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False


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


def _record_hub_calls(monkeypatch):
    """AutoTokenizer.from_pretrained replaced by a recorder; downloads allowed (offline unset)."""
    import transformers

    calls: list[tuple[str, bool]] = []

    def fake_from_pretrained(name, **kwargs):
        calls.append((name, kwargs.get("local_files_only", False)))
        raise OSError(f"{name} not found")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_a_path_given_as_a_path_never_reaches_the_hub(tmp_path, monkeypatch):
    """Issue 12: a missing directory fell back to the hub (78 s of retries). Anything shaped like a
    path fails at once without even a local-cache lookup."""
    from pathlib import Path

    calls = _record_hub_calls(monkeypatch)
    monkeypatch.chdir(tmp_path)
    for name in (
        Path("nope"),
        Path("org/name"),  # a CLI's typer Path option: declared a path
        "./nope",
        "nope/x/y",
        "/abs/nope",
        "models\\run1",
        "~/nope",
    ):
        with pytest.raises(ModelNotAvailableError, match=r"does not exist.*never looked up"):
            load_tokenizer(name, allow_download=True)
    assert calls == []


def test_a_bare_name_is_looked_up_locally_but_never_on_the_hub(tmp_path, monkeypatch):
    calls = _record_hub_calls(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"hub was not contacted.*'org/name'"):
        load_tokenizer("nope", allow_download=True)
    assert calls == [("nope", True)]  # the local cache only


def test_only_an_org_name_id_reaches_the_hub_after_the_local_checks(tmp_path, monkeypatch):
    calls = _record_hub_calls(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="could not be downloaded"):
        load_tokenizer("some-org/model", allow_download=True)
    assert calls == [("some-org/model", True), ("some-org/model", False)]
    with pytest.raises(ModelNotAvailableError, match="allow_download=False"):
        load_tokenizer("some-org/model", allow_download=False)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("sentence-transformers/all-MiniLM-L6-v2", True),
        ("org/name.v1", True),
        ("gpt2", False),
        ("org/name/extra", False),
        ("org//name", False),
        ("org/na--me", False),
        ("org/..", False),
        ("-org/name", False),
        ("org/name.", False),
        ("org/na me", False),
        ("", False),
    ],
)
def test_is_hub_id(name, expected):
    from papercore.models import is_hub_id

    assert is_hub_id(name) is expected


def test_a_name_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"hub id 'org/name', got int: 3"):
        load_tokenizer(3)


class _FakePartialState:
    """accelerate.PartialState on rank 3 of a 4-GPU node (no GPU needed: only the device is read)."""

    calls = 0

    def __init__(self):
        type(self).calls += 1
        self.device = torch.device("cuda", 3)


def _launched(monkeypatch, local_rank="3", world_size="4"):
    import accelerate

    _FakePartialState.calls = 0
    monkeypatch.setattr(accelerate, "PartialState", _FakePartialState)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setenv("WORLD_SIZE", world_size)


def test_local_device_outside_a_launch_is_the_usual_default(monkeypatch):
    from papercore.models import distributed_launch, local_device, resolve_device

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed_launch()
    assert local_device() == resolve_device(None)


def test_local_device_under_a_launch_is_the_ranks_device(monkeypatch):
    from papercore.models import distributed_launch, local_device

    _launched(monkeypatch)
    assert distributed_launch()
    assert local_device() == torch.device("cuda", 3)
    assert _FakePartialState.calls == 1
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # WORLD_SIZE > 1 alone is a launch too
    assert distributed_launch()


def test_local_device_on_a_real_cpu_partial_state(monkeypatch):
    """The real accelerate: an initialised single-process PartialState (what any ``Trainer``
    creates) is not a launch, and on this CPU machine its device, hence the model's, is the CPU."""
    pytest.importorskip("accelerate")
    from accelerate import PartialState

    from papercore.models import distributed_launch, local_device

    if torch.cuda.is_available():
        pytest.skip("checks the CPU case")
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    was_initialised = bool(PartialState._shared_state)
    state = PartialState()
    try:
        assert state.num_processes == 1
        assert not distributed_launch()
        assert local_device() == state.device == torch.device("cpu")
    finally:
        if not was_initialised:
            PartialState._reset_state()
    assert not distributed_launch()


def test_load_model_under_a_launch_moves_to_the_ranks_device(monkeypatch, tiny_model_dir):
    """load_model(device=None) on rank 3 targets cuda:3, never cuda:0 (``.to`` is recorded, not run)."""
    import transformers

    targets = []

    def record_to(self, *args, **kwargs):
        targets.append(args[0] if args else kwargs.get("device"))
        return self

    _launched(monkeypatch)
    monkeypatch.setattr(transformers.PreTrainedModel, "to", record_to)
    load_model(tiny_model_dir, dtype="float32")
    load_model(tiny_model_dir, dtype="float32", device="auto")
    load_model(tiny_model_dir, dtype="float32", device="cpu")  # an explicit device wins
    assert targets == [torch.device("cuda", 3), torch.device("cuda", 3), torch.device("cpu")]


def test_missing_sentence_transformers_names_the_extra(monkeypatch):
    import sys

    from papercore.errors import BackendUnavailableError
    from papercore.models import import_sentence_transformers, load_sentence_transformer

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install \"papercore\[st\]\""):
        import_sentence_transformers("a test")
    with pytest.raises(BackendUnavailableError, match="loading a sentence-transformers model"):
        load_sentence_transformer("org/name")


def test_an_initialised_multi_process_state_is_a_launch(monkeypatch):
    """A PartialState with several processes counts even without the env variables."""
    pytest.importorskip("accelerate")
    from accelerate.state import PartialState

    from papercore.models import distributed_launch

    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(PartialState, "_shared_state", {"num_processes": 2})
    assert distributed_launch()
    monkeypatch.setattr(PartialState, "_shared_state", {"num_processes": 1})
    assert not distributed_launch()
