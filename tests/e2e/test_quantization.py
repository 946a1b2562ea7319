"""ATen-level quantization (qmlir.quantize): configs, calibration errors, every mode eager ==
compiled, the planted-outlier SQNR check, and save/load. SmolLM2 accuracy bounds are in
test_quantization_smollm2.py."""
import math

import pytest
import torch

import qmlir
from qmlir.quantization import PRESETS, QuantConfig, QuantConfigError
from qmlir.quantization.linear import QuantizedLinear
from qmlir.ir.quant_storage import pack_int4, quantize_weight, unpack_int4


def tiny_llama(seed=0, hidden=48, inter=96):
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg).eval()


def calib_ids(n=4, T=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 128, (1, T), generator=g) for _ in range(n)]


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    return 10 * math.log10(float(ref.pow(2).sum()) / float((ref - out).pow(2).sum()))


# ---- configs -------------------------------------------------------------------------------

def test_config_yaml_round_trip(tmp_path):
    cfg = QuantConfig(weight_dtype="int8", weight_granularity="channel", act_dtype="int8", act_granularity="tensor",
                      act_calib="percentile", smoothquant_alpha=0.5, outlier_threshold=6.0, skip=["lm_head", "*.o_proj"])
    path = tmp_path / "w8a8.yaml"
    cfg.to_yaml(path)
    assert QuantConfig.from_yaml(str(path)) == cfg
    assert QuantConfig.from_yaml(cfg.to_yaml()) == cfg
    for name, preset in PRESETS.items():
        assert QuantConfig.from_yaml(preset.to_yaml()) == preset, name


@pytest.mark.parametrize("text,needle", [
    ("weight_dtype: int3\n", "weight_dtype='int3'"),
    ("weigth_dtype: int8\n", "unknown key(s) weigth_dtype"),
    ("act_calib: mse\n", "act_calib='mse'"),
    ("smoothquant_alpha: 1.5\nact_dtype: int8\n", "smoothquant_alpha=1.5"),
    ("group_size: 7\n", "group_size=7"),
    ("outlier_threshold: -1\nact_dtype: int8\n", "outlier_threshold=-1"),
    ("weight_dtype: int4\nact_dtype: int8\n", "W4A8"),
    ("smoothquant_alpha: 0.5\n", "needs act_dtype=int8"),
    ("awq_alpha: auto\nact_dtype: int8\n", "awq_alpha is for weight-only"),
    ("weight_symmetric: false\nact_dtype: int8\n", "weight_symmetric=false is for weight-only"),
    ("weight_algorithm: obq\n", "weight_algorithm='obq'"),
    ("gptq_damp: -0.1\n", "gptq_damp=-0.1"),
    ("gptq_sink_weight: 0.5\n", "gptq_sink_weight=0.5"),
    ("gptq_act_order: maybe\n", "gptq_act_order='maybe'"),
    ("[1, 2]\n", "mapping"),
    ("a: [\n", "invalid YAML"),
])
def test_config_errors_name_the_key(text, needle):
    with pytest.raises(QuantConfigError) as e:
        QuantConfig.from_yaml(text)
    assert needle in str(e.value)


def test_unknown_preset():
    with pytest.raises(QuantConfigError, match="unknown preset 'w9a9'"):
        qmlir.quantize(torch.nn.Linear(4, 4), None, "w9a9")


# ---- calibration errors ----------------------------------------------------------------------

def test_empty_calibration_data_is_an_error():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(qmlir.CalibrationError, match="empty"):
        qmlir.quantize(model, [], QuantConfig(act_dtype="int8", skip=[]), progress=False)
    with pytest.raises(qmlir.QuantizationError, match="needs calibration data"):
        qmlir.quantize(model, None, QuantConfig(act_dtype="int8", skip=[]), progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_calibration_names_the_layer(bad):
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(2, 8)
    x[0, 3] = bad
    with pytest.raises(qmlir.CalibrationError, match="in the input of layer '0'"):
        qmlir.quantize(model, [torch.randn(2, 8), x], QuantConfig(act_dtype="int8", skip=[]), progress=False)


def test_everything_skipped_is_an_error():
    with pytest.raises(qmlir.QuantizationError, match="no nn.Linear"):
        qmlir.quantize(torch.nn.Sequential(torch.nn.Linear(4, 4)), None, QuantConfig(skip=["*"]))


# ---- weights ---------------------------------------------------------------------------------

def test_int4_packing_round_trips_and_halves_storage():
    q = torch.randint(-8, 8, (10, 6), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.shape == (5, 6) and packed.dtype == torch.int8
    assert torch.equal(unpack_int4(packed), q)
    u = torch.randint(0, 16, (10, 6), dtype=torch.int8)  # asymmetric storage: unsigned nibbles
    assert torch.equal(unpack_int4(pack_int4(u), signed=False), u)


def test_asymmetric_weights_use_the_full_range():
    w = torch.tensor([[-4.0, 0.0, 5.5, 11.0]])  # [N=1, K=4]: range [-4, 11] -> scale 1, zero point 4
    qw = quantize_weight(w, 4, "channel", symmetric=False)
    assert qw.scales.tolist() == [1.0] and qw.zero_points.tolist() == [4]
    assert unpack_int4(qw.storage, signed=False)[:, 0].tolist() == [0, 4, 10, 15]  # 5.5 -> 6 (half to even)


def test_gptq_beats_round_to_nearest_on_correlated_inputs():
    from qmlir.quantization.gptq import gptq_quantize
    from qmlir.ir.quant_storage import dequantize_weight
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=g) @ torch.randn(64, 64, generator=g)
    w = torch.randn(32, 64, generator=g)
    ref = x @ w.t()

    def err(qw):
        return float((x @ dequantize_weight(qw.storage, qw.scales, 4, 16, qw.zero_points)[:64] - ref).pow(2).mean())

    rtn = err(quantize_weight(w, 4, "group", 16))
    gptq = err(gptq_quantize(w, x.t() @ x, 4, "group", 16))
    assert gptq < 0.8 * rtn, (gptq, rtn)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gptq_storage_and_error(act_order, symmetric):
    """Act order (channels visited by decreasing activation energy) keeps the storage layout:
    groups of consecutive input channels, scales and zero points per group; the layer's output
    error on the calibration inputs stays below round-to-nearest's."""
    from qmlir.quantization.gptq import gptq_quantize
    from qmlir.ir.quant_storage import dequantize_weight
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(1024, 40, generator=g) @ torch.randn(40, 40, generator=g)) * torch.linspace(0.1, 3, 40)
    w = torch.randn(8, 40, generator=g)
    qw = gptq_quantize(w, x.t() @ x, 4, "group", 16, symmetric=symmetric, act_order=act_order)
    assert qw.storage.shape == (24, 8) and qw.scales.shape == (3, 8) and qw.in_features == 40
    assert (qw.zero_points is None) == symmetric
    q = unpack_int4(qw.storage, signed=symmetric)
    assert int(q.min()) >= (-8 if symmetric else 0) and int(q.max()) <= (7 if symmetric else 15)
    assert torch.equal(q[40:], (qw.zero_points[2:3].expand(8, 8).to(torch.int8) if not symmetric
                                else torch.zeros(8, 8, dtype=torch.int8)))  # padded rows dequantize to 0

    def err(qw):
        wq = dequantize_weight(qw.storage, qw.scales, 4, 16, qw.zero_points)[:40]
        return float((x @ wq - x @ w.t()).pow(2).mean())

    assert err(qw) < 0.8 * err(quantize_weight(w, 4, "group", 16, symmetric=symmetric))


def test_clip_search_weighs_channels_by_importance():
    """One group holding an outlier: with equal importance the search clips it (less total
    error), and when that channel dominates the activations it keeps the full range."""
    from qmlir.quantization.gptq import search_params
    w = torch.cat([torch.linspace(-1, 1, 31), torch.tensor([4.0])]).reshape(1, 1, 32)
    s_flat, _ = search_params(w, torch.ones(1, 32), -8, 7, True)
    imp = torch.ones(1, 32)
    imp[0, -1] = 1e4
    s_heavy, _ = search_params(w, imp, -8, 7, True)
    assert float(s_flat) < 4.0 / 7 and float(s_heavy) == pytest.approx(4.0 / 7)


def test_calibration_counts_the_first_position_sink_weight_times():
    from qmlir.quantization.calibration import calibrate
    lin = torch.nn.Linear(6, 3)
    x = torch.randn(2, 5, 6)
    obs = calibrate(lin, [x], {"l": lin}, progress=False, hessian=True, sink_weight=10.0)["l"]
    flat, first = x.reshape(-1, 6), x[:, 0]
    ref = flat.t() @ flat + 9.0 * first.t() @ first
    torch.testing.assert_close(obs.xtx, ref.double(), rtol=1e-5, atol=1e-5)


def test_group_quantization_pads_k_and_rounds_half_to_even():
    w = torch.randn(4, 40)
    qw = quantize_weight(w, 4, "group", 16)
    assert qw.storage.shape == (24, 4) and qw.scales.shape == (3, 4)  # K 40 -> 48: 3 groups, packed
    ties = torch.tensor([[2.5, -2.5, 0.5, 7.0]])  # scale 1 (absmax 7 / qmax 7): ties go to even
    assert torch.equal(quantize_weight(ties, 4, "tensor").storage, pack_int4(torch.tensor([[2], [-2], [0], [7]],
                                                                                            dtype=torch.int8)))


# ---- eager == compiled, per mode -----------------------------------------------------------

MODES = {
    "int8_weight_only": QuantConfig(),
    "int8_weight_only_tensor": QuantConfig(weight_granularity="tensor"),
    "int4_g32_padded": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=32),  # K=48, 96
    "w8a8_static": QuantConfig(act_dtype="int8"),
    "w8a8_static_asym_minmax": QuantConfig(act_dtype="int8", act_calib="minmax", act_symmetric=False),
    "w8a8_static_percentile_group": QuantConfig(act_dtype="int8", act_calib="percentile", act_percentile=99.0,
                                                weight_granularity="group", group_size=16),
    "w8a8_dynamic": QuantConfig(act_dtype="int8", act_granularity="token"),
    "w8a8_block32_g32": QuantConfig(act_dtype="int8", act_granularity="block", weight_granularity="group",
                                    group_size=32),  # K=40 padded to 64
    "w4a8_block32_g32": QuantConfig(weight_dtype="int4", act_dtype="int8", act_granularity="block",
                                    weight_granularity="group", group_size=32),
    "w8a8_block8_channel_outliers": QuantConfig(act_dtype="int8", act_granularity="block", act_block=8,
                                                outlier_threshold=1.5),
    "w8a8_smoothquant_auto": QuantConfig(act_dtype="int8", smoothquant_alpha="auto", smoothquant_grid=5),
    "w8a8_outliers": QuantConfig(act_dtype="int8", outlier_threshold=1.5, outlier_dtype="f16"),
    "w8a8_dynamic_outliers_bf16": QuantConfig(act_dtype="int8", act_granularity="token", outlier_threshold=1.5,
                                              outlier_dtype="bf16"),
    "int4_awq": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=16, awq_alpha="auto",
                            smoothquant_grid=5),
    "int4_asym_gptq": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=16,
                                  weight_symmetric=False, weight_algorithm="gptq"),
    "int8_asym_channel": QuantConfig(weight_symmetric=False),
    "bf16": QuantConfig(weight_dtype="bf16"),
}


# Output SQNR (dB) against the float model, measured minus ~3 dB: (single layer, tiny Llama).
FLOORS = {
    "int8_weight_only": (47, 42), "int8_weight_only_tensor": (45, 37), "int4_g32_padded": (22, 17),
    "w8a8_static": (36, 37), "w8a8_static_asym_minmax": (37, 36), "w8a8_static_percentile_group": (25, 24),
    "w8a8_dynamic": (40, 39), "w8a8_block32_g32": (40, 39), "w4a8_block32_g32": (20, 17), "w8a8_block8_channel_outliers": (50, 39),
    "w8a8_smoothquant_auto": (36, 37), "w8a8_outliers": (57, 39),
    "w8a8_dynamic_outliers_bf16": (50, 42), "int4_awq": (21, 17), "int4_asym_gptq": (18, 18),
    "int8_asym_channel": (46, 43), "bf16": (48, 48),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_single_layer_eager_equals_compiled(mode):
    """One quantized linear: compiled == eager within 1e-5 relative (integer part exact: see
    below), and eager within its floor of the float layer."""
    torch.manual_seed(3)
    lin = torch.nn.Sequential(torch.nn.Linear(40, 24))
    calib = [torch.randn(6, 40) * torch.linspace(0.1, 3, 40) for _ in range(3)]
    q = qmlir.quantize(lin, calib, MODES[mode].__class__(**{**MODES[mode].to_dict(), "skip": []}), progress=False)
    x = torch.randn(6, 40) * torch.linspace(0.1, 3, 40)
    with torch.no_grad():
        eager = q(x)
        compiled = qmlir.compile(q, (x,))(x)
        ref = lin(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5 * float(eager.abs().max()))
    assert sqnr_db(ref, eager) >= FLOORS[mode][0], sqnr_db(ref, eager)


@pytest.mark.parametrize("dynamic", [False, True])
def test_integer_part_is_bit_exact(dynamic):
    """With unit scales and integer inputs the outputs are the i32 accumulators themselves."""
    K, N, M = 64, 16, 5
    g = torch.Generator().manual_seed(0)
    wq = torch.randint(-128, 128, (K, N), generator=g, dtype=torch.int8)
    x = torch.randint(-127, 128, (M, K), generator=g).to(torch.float32)
    if dynamic:  # per-token scale = max|x_m| / 127 = 1: put a 127 in every row
        x[:, 0] = 127.0
    layer = QuantizedLinear(K, N, "w8a8_dynamic" if dynamic else "w8a8_static", 8, 0, wq, torch.ones(N),
                            act_scale=1.0, act_zero_point=0)
    expected = (x.to(torch.int64) @ wq.to(torch.int64)).to(torch.float32)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)
        assert torch.equal(qmlir.compile(layer, (x,))(x), expected)


@pytest.mark.parametrize("mode", ["int8_weight_only", "int4_g32_padded", "int4_awq", "int4_asym_gptq",
                                  "w8a8_static_asym_minmax",
                                  "w8a8_dynamic", "w8a8_block32_g32", "w8a8_smoothquant_auto", "w8a8_outliers",
                                  "bf16"])
def test_llama_eager_equals_compiled(mode):
    """A whole (tiny, random) Llama: both paths agree; quantization error vs float is small."""
    model = tiny_llama()
    ids = calib_ids(1, 16, seed=9)[0]
    q = qmlir.quantize(model, calib_ids(), MODES[mode], progress=False)
    with torch.no_grad():
        ref = model(ids).logits
        eager = q(ids).logits
        compiled = qmlir.compile(q, (ids,))(ids).logits
    scale = float(eager.abs().max())
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4 * scale)
    assert sqnr_db(ref, eager) >= FLOORS[mode][1], sqnr_db(ref, eager)


def test_quantize_leaves_the_model_untouched_and_folds_smoothquant():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = qmlir.quantize(model, calib_ids(), QuantConfig(act_dtype="int8", smoothquant_alpha=0.5), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    layers = q.qmlir_quant.layers
    assert layers["model.layers.0.self_attn.q_proj"]["smooth"] == "folded"   # into input_layernorm
    assert layers["model.layers.0.mlp.down_proj"]["smooth"] == "folded"      # into up_proj's rows
    assert layers["model.layers.0.self_attn.o_proj"]["smooth"] == "explicit"  # GQA: no fold
    assert not torch.equal(q.model.layers[0].input_layernorm.weight, model.model.layers[0].input_layernorm.weight)
    assert isinstance(q.model.layers[0].self_attn.o_proj, QuantizedLinear)
    assert q.model.layers[0].self_attn.o_proj.smooth_inv is not None
    assert not isinstance(q.lm_head, QuantizedLinear)  # skipped by default


# ---- planted outliers ------------------------------------------------------------------------

def test_planted_outliers_sqnr():
    """A few input channels 20-60x larger: naive per-tensor W8A8 loses >= 10 dB against the
    outlier-free case; keeping the outlier channels in f16 recovers it within 1 dB."""
    torch.manual_seed(0)
    K, N, M = 256, 64, 32
    lin = torch.nn.Sequential(torch.nn.Linear(K, N))
    boost = torch.ones(K)
    boost[[3, 70, 150, 222]] = torch.tensor([20.0, 35.0, 50.0, 60.0])

    def batch(planted):
        x = torch.randn(M, K)
        return x * boost if planted else x

    def sqnr(planted, cfg):
        calib = [batch(planted) for _ in range(4)]
        q = qmlir.quantize(lin, calib, cfg, progress=False)
        x = batch(planted)
        with torch.no_grad():
            ref, eager = lin(x), q(x)
            compiled = qmlir.compile(q, (x,))(x)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5 * float(eager.abs().max()))
        return sqnr_db(ref, eager)

    naive = QuantConfig(act_dtype="int8", skip=[])
    clean = sqnr(False, naive)
    with_outliers = sqnr(True, naive)
    kept = sqnr(True, QuantConfig(act_dtype="int8", outlier_threshold=6.0, skip=[]))
    assert clean - with_outliers >= 10, (clean, with_outliers)
    assert kept >= clean - 1, (clean, kept)


# ---- one file --------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    model = tiny_llama()
    cfg = QuantConfig(act_dtype="int8", smoothquant_alpha=0.5, outlier_threshold=1.5, skip=[])
    q = qmlir.quantize(model, calib_ids(), cfg, progress=False)
    path = qmlir.save_quantized(q, tmp_path / "tiny.safetensors")
    fresh = tiny_llama(seed=5)  # other weights, same architecture
    loaded = qmlir.load_quantized(fresh, path)
    ids = calib_ids(1, 16, seed=9)[0]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, q(ids).logits)
    assert loaded.qmlir_quant.config == cfg
    assert isinstance(loaded.model.layers[1].mlp.down_proj, QuantizedLinear)
    assert loaded.model.layers[1].mlp.down_proj.n_outliers == q.model.layers[1].mlp.down_proj.n_outliers

    for preset in ("int4-g128", "bf16"):  # packed nibbles; cast layers (their load was broken)
        other = qmlir.quantize(model, None, preset, progress=False)
        path2 = qmlir.save_quantized(other, tmp_path / f"{preset}.safetensors")
        with torch.no_grad():
            assert torch.equal(qmlir.load_quantized(tiny_llama(seed=6), path2)(ids).logits, other(ids).logits)


def test_load_into_a_mismatched_model_is_an_error(tmp_path):
    q = qmlir.quantize(tiny_llama(), None, "int8-weight-only", progress=False)
    path = qmlir.save_quantized(q, tmp_path / "tiny.safetensors")
    with pytest.raises(qmlir.QuantizationError, match="is 48->48 in the file but 64->64"):
        qmlir.load_quantized(tiny_llama(hidden=64, inter=96), path)
    with pytest.raises(qmlir.QuantizationError, match="holds a quantized LlamaForCausalLM"):
        qmlir.load_quantized(torch.nn.Sequential(torch.nn.Linear(48, 48)), path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(qmlir.QuantizationError, match="not a safetensors file"):
        qmlir.load_quantized(tiny_llama(), tmp_path / "junk.safetensors")


def test_scales_changed_in_place_are_not_reused():
    """Scales are constants in the compiled code, and Dynamo does not guard on buffer values:
    scales changed in place (or another module of the same shapes reaching the same compiled
    graph) get a graph compiled for their values, not the first one's answer."""
    torch._dynamo.reset()
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    with torch.no_grad():
        q = qmlir.quantize(torch.nn.Sequential(torch.nn.Linear(64, 32)).eval(), [x], QuantConfig(weight_dtype="int8"),
                           progress=False)
        compiled = torch.compile(q, backend=qmlir.backend(strict=True))
        torch.testing.assert_close(compiled(x), q(x), rtol=1e-5, atol=1e-5)
        q[0].scales.mul_(2.0)  # the same tensor, a new version
        torch.testing.assert_close(compiled(x), q(x), rtol=1e-5, atol=1e-5)
        q[0].scales.div_(2.0)  # back to values already compiled for
        torch.testing.assert_close(compiled(x), q(x), rtol=1e-5, atol=1e-5)
