"""papercore.layers: decoder layers across architectures, Tensor and tuple layer outputs."""

from __future__ import annotations

import pytest
import torch

from papercore.errors import UnsupportedArchitectureError
from papercore.layers import decoder_layers, decoder_stack, layer_hidden, replace_layer_hidden
from papercore.testing.builders import tiny_causal_lm


@pytest.fixture(scope="module")
def ids():
    return torch.randint(3, 90, (2, 7), generator=torch.Generator().manual_seed(0))


def _steer(model, layers, ids, delta_scale=3.0):
    """Logits without and with a forward hook adding δ to layer 0's hidden states (and the hook's seen output types)."""
    seen = []

    def hook(module, args, output):
        seen.append(type(output))
        h = layer_hidden(output)
        # a random direction: a constant shift would vanish in GPT-2's LayerNorms
        delta = delta_scale * torch.randn(h.shape[-1], generator=torch.Generator().manual_seed(1))
        return replace_layer_hidden(output, h + delta)

    with torch.no_grad():
        base = model(ids).logits
        handle = layers[0].register_forward_hook(hook)
        try:
            steered = model(ids).logits
        finally:
            handle.remove()
        again = model(ids).logits
    torch.testing.assert_close(again, base)  # the hook is gone
    return base, steered, seen


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_causal_lms_from_papercore_builders(arch, ids, one_torch_thread):
    model = tiny_causal_lm(arch, num_hidden_layers=3)
    layers = decoder_layers(model)
    assert layers is model.model.layers and len(layers) == 3
    assert decoder_stack(model) is model.model
    assert decoder_layers(model.model) is layers  # the bare stack
    base, steered, seen = _steer(model, layers, ids)
    assert seen and all(t is torch.Tensor for t in seen)  # transformers 5.24: a Tensor
    assert (steered - base).abs().max() > 1e-3


def test_gpt2_and_gpt_neox_from_config(ids, one_torch_thread):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100)).eval()
    assert decoder_layers(gpt2) is gpt2.transformer.h
    assert decoder_stack(gpt2) is gpt2.transformer
    assert decoder_layers(gpt2.transformer) is gpt2.transformer.h
    base, steered, _ = _steer(gpt2, decoder_layers(gpt2), ids)
    assert (steered - base).abs().max() > 1e-3

    neox = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
        )
    ).eval()
    assert decoder_layers(neox) is neox.gpt_neox.layers
    base, steered, _ = _steer(neox, decoder_layers(neox), ids)
    assert (steered - base).abs().max() > 1e-3


def test_peft_lora_model_is_unwrapped(ids, one_torch_thread):
    peft = pytest.importorskip("peft")
    model = tiny_causal_lm("llama", num_hidden_layers=2)
    lora = peft.get_peft_model(
        model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    assert isinstance(lora, peft.PeftModel)
    layers = decoder_layers(lora)
    assert layers is model.model.layers
    assert "lora" in type(layers[0].self_attn.q_proj).__module__.lower()  # the adapted layers
    base, steered, _ = _steer(lora, layers, ids)
    assert (steered - base).abs().max() > 1e-3


class _TupleLayer(torch.nn.Module):
    """A layer in the style of transformers < 5.24: returns ``(hidden, attention_weights)``."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.proj(x), torch.ones(1)


class _TupleStack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([_TupleLayer(), _TupleLayer()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)[0]
        return x


def test_tuple_returning_layers():
    torch.manual_seed(0)
    stack = _TupleStack()
    x = torch.randn(2, 3, 4)
    assert decoder_layers(stack) is stack.layers
    out = stack.layers[0](x)
    assert layer_hidden(out) is out[0]
    new = replace_layer_hidden(out, out[0] + 1)
    assert isinstance(new, tuple) and len(new) == 2 and new[1] is out[1]
    torch.testing.assert_close(new[0], out[0] + 1)
    as_list = replace_layer_hidden(list(out), out[0] * 0)
    assert isinstance(as_list, list) and float(as_list[0].detach().abs().sum()) == 0.0

    with torch.no_grad():
        base = stack(x)
        handle = stack.layers[0].register_forward_hook(
            lambda m, a, o: replace_layer_hidden(o, layer_hidden(o) + torch.arange(4.0))
        )
        steered = stack(x)
        handle.remove()
    assert (steered - base).abs().max() > 1e-3


def test_tensor_output_round_trip():
    h = torch.randn(1, 2, 3)
    assert layer_hidden(h) is h
    g = torch.zeros_like(h)
    assert replace_layer_hidden(h, g) is g


def test_unsupported_models_and_outputs_are_named_errors():
    class Encoderish(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(UnsupportedArchitectureError, match=r"Encoderish.*model\.layers.*GPT-2"):
        decoder_layers(Encoderish())
    with pytest.raises(TypeError):  # UnsupportedArchitectureError is a TypeError
        decoder_layers(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedArchitectureError, match=r"Tensor.*got dict"):
        layer_hidden({"hidden": torch.zeros(1)})
    with pytest.raises(UnsupportedArchitectureError, match=r"got tuple of length 0"):
        layer_hidden(())
    with pytest.raises(UnsupportedArchitectureError, match=r"got tuple of length 1 \(NoneType\)"):
        replace_layer_hidden((None,), torch.zeros(1))
    with pytest.raises(TypeError, match=r"hidden must be a torch\.Tensor, got list"):
        replace_layer_hidden(torch.zeros(1), [0.0])
