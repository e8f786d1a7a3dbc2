import pytest
import torch


@pytest.fixture(scope="session")
def make_model(make_tiny_causal_lm):
    cache = {}

    def make(arch="llama", impl="sdpa", layers=8):
        key = (arch, impl, layers)
        if key not in cache:
            cache[key] = make_tiny_causal_lm(
                arch, attn_implementation=impl, num_hidden_layers=layers
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def context_ids():
    return torch.randint(3, 500, (1, 160), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def model_dir8(make_model, tiny_tokenizer, tmp_path_factory):
    """An 8-layer tiny Llama saved with its tokenizer (the pivot needs depth)."""
    from papercore.testing.builders import save_model_dir

    return save_model_dir(
        make_model("llama", "sdpa"), tiny_tokenizer, tmp_path_factory.mktemp("llama8")
    )
