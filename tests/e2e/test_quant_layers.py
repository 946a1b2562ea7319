"""Per-layer schemes (QuantConfig.layers): overrides by module-name pattern, validated like every
key, applied by qmlir.quantize, reported, saved in the one file, and compiled as the eager model."""
import pytest
import torch

import qmlir
from qmlir.quantization import QuantConfig, QuantConfigError
from qmlir.quantization.linear import CastLinear, QuantizedLinear

from test_quantization import calib_ids, sqnr_db, tiny_llama

INT4 = dict(weight_dtype="int4", weight_granularity="group", group_size=16)


def test_overrides_apply_first_match_and_compile(tmp_path):
    """int4 everywhere, the head in int8 per channel, down_proj in int8 except layer 1's (bf16):
    the first matching pattern wins; eager == compiled; the file keeps every layer's scheme."""
    cfg = QuantConfig(**INT4, skip=[], layers={
        "lm_head": {"weight_dtype": "int8", "weight_granularity": "channel"},
        "model.layers.1.mlp.down_proj": {"weight_dtype": "bf16"},
        "*.down_proj": {"weight_dtype": "int8"},
    })
    model = tiny_llama()
    q = qmlir.quantize(model, None, cfg, progress=False)
    assert isinstance(q.lm_head, QuantizedLinear) and q.lm_head.bits == 8 and q.lm_head.group_size == 0
    assert q.model.layers[0].mlp.down_proj.bits == 8 and q.model.layers[0].mlp.down_proj.group_size == 16
    assert isinstance(q.model.layers[1].mlp.down_proj, CastLinear)
    assert q.model.layers[0].self_attn.q_proj.bits == 4
    layers = q.qmlir_quant.layers
    assert layers["lm_head"]["scheme"] == "W8 weight-only (channel)" and "scheme" not in layers["model.layers.0.mlp.up_proj"]
    assert "3 layers with their own scheme" in q.qmlir_quant.summary()
    ids = calib_ids(1, 16, seed=9)[0]
    with torch.no_grad():
        ref, eager = model(ids).logits, q(ids).logits
        compiled = qmlir.compile(q, (ids,))(ids).logits
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4 * float(eager.abs().max()))
    assert sqnr_db(ref, eager) >= 17
    loaded = qmlir.load_quantized(tiny_llama(seed=4), qmlir.save_quantized(q, tmp_path / "mixed.safetensors"))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, eager)
    assert loaded.qmlir_quant.config == cfg and loaded.qmlir_quant.config.layers == cfg.layers


def test_an_int8_head_beats_an_int4_head():
    """What the override is for: the same int4 model with its head in int8 is closer to float."""
    model = tiny_llama()
    ids = calib_ids(4, 16, seed=9)
    plain = qmlir.quantize(model, None, QuantConfig(**INT4, skip=[]), progress=False)
    head8 = qmlir.quantize(model, None, QuantConfig(**INT4, skip=[], layers={"lm_head": {"weight_dtype": "int8",
                                                                          "weight_granularity": "channel"}}),
                           progress=False)
    with torch.no_grad():
        ref = torch.cat([model(i).logits for i in ids])
        a, b = (torch.cat([m(i).logits for i in ids]) for m in (plain, head8))
    assert sqnr_db(ref, b) > sqnr_db(ref, a) + 1


def test_calibration_follows_the_layers_that_need_it():
    """Weight-only everywhere but one W8A8 static layer: calibration runs, and only that layer
    has an activation scale."""
    cfg = QuantConfig(layers={"*.o_proj": {"act_dtype": "int8"}})
    with pytest.raises(qmlir.QuantizationError, match="needs calibration data"):
        qmlir.quantize(tiny_llama(), None, cfg, progress=False)
    q = qmlir.quantize(tiny_llama(), calib_ids(), cfg, progress=False)
    assert q.model.layers[0].self_attn.o_proj.mode == "w8a8_static"
    assert q.model.layers[0].self_attn.o_proj.act_scale > 0
    assert q.model.layers[0].self_attn.q_proj.mode == "weight_only"


@pytest.mark.parametrize("layers, match", [
    ({"lm_head": {"skip": []}}, "skip cannot be set per layer"),
    ({"*": {"weight_dtype": "int3"}}, r"layers\['\*'\]: weight_dtype='int3'"),
    ({"*": {"weight_dtype": "int4", "act_dtype": "int8"}}, r"layers\['\*'\]: weight_dtype=int4 with act_dtype=int8"),
    ({"*": "int8"}, r"layers\['\*'\]: expected a mapping"),
    ([["*", {}]], "expected a mapping of module-name patterns"),
])
def test_bad_overrides_name_the_pattern(layers, match):
    with pytest.raises(QuantConfigError, match=match):
        QuantConfig(layers=layers)


def test_a_pattern_matching_nothing_is_an_error():
    with pytest.raises(qmlir.QuantizationError, match="'*.mlp.dwn_proj' matches no linear layer"):
        qmlir.quantize(tiny_llama(), None, QuantConfig(layers={"*.mlp.dwn_proj": {"weight_dtype": "int4",
                                                                                   "weight_granularity": "group"}}),
                       progress=False)
    with pytest.raises(qmlir.QuantizationError, match="only skipped layers"):
        qmlir.quantize(tiny_llama(), None, QuantConfig(layers={"lm_head": {"weight_granularity": "tensor"}}),
                       progress=False)


def test_overrides_round_trip_through_yaml(tmp_path):
    cfg = QuantConfig(**INT4, layers={"*.down_proj": {"weight_dtype": "int8", "weight_granularity": "channel"}})
    path = tmp_path / "mixed.yaml"
    cfg.to_yaml(path)
    assert QuantConfig.from_yaml(path) == cfg
    assert "down_proj" in path.read_text()
