"""SmoothQuant's groups and folds found from the traced graph (qmlir/quantization/dataflow.py):
per architecture, which producer takes each group's 1/s, and that folding random scales leaves
the float model's output unchanged (so a fold is never wrong, only sometimes unavailable)."""
import warnings

import pytest
import torch

import qmlir
from qmlir.quantization import QuantConfig, smoothquant
from qmlir.quantization.linear import QuantizedLinear, conv1d_as_linear

transformers = pytest.importorskip("transformers")
V = 96


def _model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    t = transformers
    small = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=4)
    if arch == "llama":
        m = t.LlamaForCausalLM(t.LlamaConfig(hidden_size=64, intermediate_size=96, num_key_value_heads=2, **small))
    elif arch == "qwen2":
        m = t.Qwen2ForCausalLM(t.Qwen2Config(hidden_size=64, intermediate_size=96, num_key_value_heads=2, **small))
    elif arch == "gemma":
        m = t.GemmaForCausalLM(t.GemmaConfig(hidden_size=64, intermediate_size=96, num_key_value_heads=1,
                                             head_dim=16, **small))
    elif arch == "opt":
        m = t.OPTForCausalLM(t.OPTConfig(hidden_size=64, ffn_dim=96, word_embed_proj_dim=64, **small))
    elif arch == "gpt2":
        m = t.GPT2LMHeadModel(t.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                                           eos_token_id=0))
    elif arch == "bert":
        m = t.BertModel(t.BertConfig(hidden_size=64, intermediate_size=96, **small))
    # norms initialized to 1 / 0 would hide a fold into the wrong tensor: perturb every parameter
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


# what takes the 1/s of layer 0's linears ("explicit": a multiply before the layer)
EXPECTED = {
    "llama": {"self_attn.q_proj": "input_layernorm", "self_attn.k_proj": "input_layernorm",
              "self_attn.v_proj": "input_layernorm", "self_attn.o_proj": "explicit",
              "mlp.gate_proj": "post_attention_layernorm", "mlp.up_proj": "post_attention_layernorm",
              "mlp.down_proj": "mlp.up_proj"},
    "opt": {"self_attn.q_proj": "self_attn_layer_norm", "self_attn.out_proj": "explicit",
            "fc1": "final_layer_norm", "fc2": "fc1"},                      # through the ReLU
    "gpt2": {"attn.c_attn": "ln_1", "attn.c_proj": "explicit", "mlp.c_fc": "ln_2",
             "mlp.c_proj": "explicit"},                                  # GELU written out of tanh
    "bert": {"attention.self.query": "explicit",                       # post-norm: it feeds the residual too
             "intermediate.dense": "explicit", "output.dense": "explicit"},
}
EXPECTED["qwen2"] = EXPECTED["gemma"] = EXPECTED["llama"]                 # Gemma: a (1 + w) gain
PREFIX = {"llama": "model.layers.0.", "qwen2": "model.layers.0.", "gemma": "model.layers.0.",
          "opt": "model.decoder.layers.0.", "gpt2": "transformer.h.0.", "bert": "encoder.layer.0."}
FINAL = {"llama": "model.norm", "qwen2": "model.norm", "gemma": "model.norm", "opt": "model.decoder.final_layer_norm",
         "gpt2": "transformer.ln_f"}


def _linears(m):
    return [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma", "opt", "gpt2", "bert"])
def test_folds_found_from_the_graph_keep_the_float_model(arch):
    m = _model(arch)
    conv1d_as_linear(m)
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))
    groups = smoothquant.find_groups(m, _linears(m), ids)
    fold_of = {n: (g.fold.module if g.fold else "explicit") for g in groups for n in g.linears}
    assert sorted(fold_of) == sorted(_linears(m))  # every linear in exactly one group
    assert sum(len(g.linears) for g in groups) == len(fold_of)
    p = PREFIX[arch]
    for lin, target in EXPECTED[arch].items():
        assert fold_of[p + lin] == (target if target == "explicit" else p + target), (lin, fold_of[p + lin])
    if arch in FINAL:
        assert fold_of["lm_head"] == FINAL[arch]
    for g in groups:
        assert g.folded or g.why and len(g.linears) == 1
    # numerics: any positive scales, folded or explicit, leave the float function unchanged
    with torch.no_grad():
        ref = m(ids)[0]
        mods = dict(m.named_modules())
        gen = torch.Generator().manual_seed(2)
        for g in groups:
            g.scales = torch.rand(mods[g.linears[0]].in_features, generator=gen) * 3 + 0.2
            inv = smoothquant.apply(g, mods)
            for n in g.linears if inv is not None else []:
                m.set_submodule(n, smoothquant.SmoothedLinear(mods[n], inv))
        out = m(ids)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_gemma_gain_fold_keeps_the_offset():
    """Gemma's norm computes x * (1 + w): the fold must give w' = (1 + w) / s - 1."""
    m = _model("gemma")
    ids = torch.randint(0, V, (1, 8))
    groups = smoothquant.find_groups(m, _linears(m), ids)
    g = next(g for g in groups if "model.layers.0.self_attn.q_proj" in g.linears)
    assert g.fold.kind == "norm" and g.fold.offset == 1.0
    w = m.model.layers[0].input_layernorm.weight.detach().clone()
    g.scales = torch.full((64,), 2.0)
    smoothquant.apply(g, dict(m.named_modules()))
    torch.testing.assert_close(m.model.layers[0].input_layernorm.weight, (1 + w) / 2 - 1)


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_w8a8_smoothquant_beyond_llama(arch, tmp_path):
    """GPT-2 (Conv1D layers) and OPT quantize with folded scales; eager, compiled and a saved and
    reloaded copy agree; the error against float stays small."""
    m = _model(arch)
    calib = [torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(s)) for s in range(4)]
    q = qmlir.quantize(m, calib, QuantConfig(act_dtype="int8", smoothquant_alpha=0.5, skip=["lm_head"]),
                       progress=False)
    layers = q.qmlir_quant.layers
    p = PREFIX[arch]
    first = p + ("attn.c_attn" if arch == "gpt2" else "self_attn.q_proj")
    assert layers[first]["smooth"] == "folded" and layers[first]["smooth_into"] == p + ("ln_1" if arch == "gpt2"
                                                                                       else "self_attn_layer_norm")
    out_proj = p + ("attn.c_proj" if arch == "gpt2" else "self_attn.out_proj")
    assert layers[out_proj]["smooth"] == "explicit" and "channels" in layers[out_proj]["smooth_why"]
    assert isinstance(q.get_submodule(first), QuantizedLinear)
    ids = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(9))
    qmlir.save_quantized(q, tmp_path / "q.safetensors")
    r = qmlir.load_quantized(m, tmp_path / "q.safetensors")
    with torch.no_grad():
        ref = m(ids).logits
        eager = q(ids).logits
        compiled = qmlir.compile(q, (ids,))(ids).logits
        reloaded = r(ids).logits
    assert torch.equal(reloaded, eager)
    scale = float(eager.abs().max())
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4 * scale)
    err = float((eager - ref).pow(2).mean() / ref.pow(2).mean())
    assert err < 10 ** -1.5, err  # better than 15 dB SQNR on a random model


class _Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export cannot trace it."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(32)
        self.a = torch.nn.Linear(32, 32)
        self.b = torch.nn.Linear(32, 8)

    def forward(self, x):
        h = self.norm(x)
        if h.sum() > 0:
            h = h * 2
        return self.b(torch.relu(self.a(h)))


def test_untraceable_model_warns_and_keeps_explicit_scales():
    torch.manual_seed(0)
    m = _Branchy().eval()
    calib = [torch.randn(4, 32) for _ in range(4)]
    with pytest.warns(UserWarning, match="could not trace _Branchy"):
        q = qmlir.quantize(m, calib, QuantConfig(act_dtype="int8", smoothquant_alpha=0.5), progress=False)
    assert {v["smooth"] for v in q.qmlir_quant.layers.values()} == {"explicit"}
    x = torch.randn(4, 32)
    with torch.no_grad():
        ref, out = m(x), q(x)
    assert float((out - ref).pow(2).mean() / ref.pow(2).mean()) < 1e-2


class _Shared(torch.nn.Module):
    """One linear called on two inputs: its weight cannot take two scalings."""

    def __init__(self):
        super().__init__()
        self.n1, self.n2 = torch.nn.LayerNorm(16), torch.nn.LayerNorm(16)
        self.lin = torch.nn.Linear(16, 16)
        self.up = torch.nn.Linear(16, 16)
        self.down = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.down(self.lin(self.n1(x)) + self.lin(self.n2(x)) * self.up(x))


def test_shared_and_residual_inputs_stay_explicit():
    torch.manual_seed(0)
    m = _Shared().eval()
    groups = smoothquant.find_groups(m, _linears(m), torch.randn(3, 16))
    why = {n: g.why for g in groups for n in g.linears if not g.folded}
    assert "more than one input" in why["lin"]
    assert "up" in why and "down" in why  # up reads the model input; down reads a sum
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # traced fine: no warning
        smoothquant.find_groups(m, ["down"], torch.randn(3, 16))
