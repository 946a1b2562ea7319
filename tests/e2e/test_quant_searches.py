"""The quantization algorithms checked by their effect, not only their plumbing: the SmoothQuant
and AWQ "auto" searches against every fixed point of their grid (on text they were not fitted
on), percentile calibration against NumPy, the searches' simulation against the real layers,
and the documented input forms of calibration data and configs."""
import math

import numpy as np
import pytest
import torch

import qmlir
from qmlir.quantization import QuantConfig, simulate
from qmlir.quantization.linear import QuantizedLinear

from test_quantization import MODES, calib_ids, sqnr_db, tiny_llama

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # smoothquant_grid=5


def planted_llama():
    """The tiny Llama with outlier channels planted in every norm (so that q/k/v and gate/up
    read a few channels 15-40x larger): the case SmoothQuant and AWQ exist for."""
    model = tiny_llama()
    with torch.no_grad():
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[[3, 17, 30]] *= torch.tensor([25.0, 40.0, 15.0])
    return model


def output_sqnr(model, cfg) -> float:
    """Logit SQNR (dB) of `model` quantized with `cfg` (calibrated on 16 x 32 tokens) on 32
    other sequences."""
    q = qmlir.quantize(model, calib_ids(16, 32), cfg, progress=False)
    held = calib_ids(32, 16, seed=9)
    with torch.no_grad():
        ref = torch.cat([model(i).logits for i in held])
        out = torch.cat([q(i).logits for i in held])
    return sqnr_db(ref, out)


def fixed_and_auto(model, key, **base):
    fixed = {a: output_sqnr(model, QuantConfig(**base, **{key: a})) for a in GRID}
    fixed[None] = output_sqnr(model, QuantConfig(**base))
    auto = output_sqnr(model, QuantConfig(**base, **{key: "auto"}))
    return fixed, auto


W8A8 = dict(act_dtype="int8", smoothquant_grid=5)
INT4 = dict(weight_dtype="int4", weight_granularity="group", group_size=16, smoothquant_grid=5)


def test_smoothquant_auto_is_never_worse_than_its_grid():
    """Planted outliers: measured naive 16.6 dB, fixed alphas 16.9-23.4 dB, auto 23.6 dB. A search
    that takes its first candidate (no smoothing) or the worst one fails here."""
    fixed, auto = fixed_and_auto(planted_llama(), "smoothquant_alpha", **W8A8)
    assert auto >= max(fixed.values()) - 0.5, (fixed, auto)
    assert auto >= fixed[None] + 5, (fixed, auto)


def test_awq_auto_is_never_worse_than_its_grid():
    """int4 g16 weight-only with planted outliers: plain 11.4 dB, fixed alphas 8.4-14.4, auto 14.9."""
    fixed, auto = fixed_and_auto(planted_llama(), "awq_alpha", **INT4)
    assert auto >= max(fixed.values()) - 0.5, (fixed, auto)
    assert auto >= fixed[None] + 2, (fixed, auto)


@pytest.mark.parametrize("key, base", [("smoothquant_alpha", W8A8), ("awq_alpha", INT4)])
def test_auto_without_outliers_stays_near_the_best(key, base):
    """A random Llama, where smoothing has little to win (the in-sample search used to lose 17 dB
    here by taking alpha = 1 everywhere): within 1 dB of the best fixed choice."""
    fixed, auto = fixed_and_auto(tiny_llama(), key, **base)
    assert auto >= max(fixed.values()) - 1.0, (fixed, auto)


def test_auto_search_needs_two_batches():
    with pytest.raises(qmlir.QuantizationError, match="at least 2 calibration batches"):
        qmlir.quantize(tiny_llama(), calib_ids(1), QuantConfig(**W8A8, smoothquant_alpha="auto"), progress=False)


@pytest.mark.parametrize("q", [99.0, 99.9])
def test_percentile_calibration_matches_numpy(q):
    """act_calib=percentile: the static scale is NumPy's percentile of |x| / 127 (every value is
    sampled here: 3 x 64 x 32 values < the sample bound)."""
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(32, 8))
    calib = [torch.distributions.StudentT(2.0).sample((64, 32)) for _ in range(3)]
    cfg = QuantConfig(act_dtype="int8", act_calib="percentile", act_percentile=q, skip=[])
    layer = qmlir.quantize(lin, calib, cfg, progress=False)[0]
    values = np.abs(torch.cat(calib).numpy().astype(np.float64))
    expected = np.percentile(values, q) / 127.0
    assert values.max() / 127.0 > 2 * expected  # the percentile clips
    assert math.isclose(layer.act_scale, expected, rel_tol=1e-5), (layer.act_scale, expected)


@pytest.mark.parametrize("mode", ["int8_weight_only", "int4_g32_padded", "w8a8_static", "w8a8_static_asym_minmax",
                                  "w8a8_dynamic", "w8a8_outliers"])
def test_search_simulation_is_the_layer(mode):
    """What the searches score (simulate.group_error without smoothing) is the error of the layer
    qmlir.quantize builds, on the same rows: the simulation has the layers' arithmetic."""
    torch.manual_seed(3)
    lin = torch.nn.Linear(40, 24)
    calib = [torch.randn(6, 40) * torch.linspace(0.1, 3, 40) for _ in range(3)]
    cfg = QuantConfig(**{**MODES[mode].to_dict(), "skip": []})
    layer = qmlir.quantize(torch.nn.Sequential(lin), calib, cfg, progress=False)[0]
    assert isinstance(layer, QuantizedLinear)
    x = torch.cat(calib)
    cmin, cmax = x.amin(0), x.amax(0)
    simulated = simulate.group_error(x, [lin.weight], None, cfg, cmin, cmax, x)
    with torch.no_grad():
        real = float((layer(x) - lin(x)).pow(2).mean())
    assert math.isclose(simulated, real, rel_tol=1e-3), (simulated, real)


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)

    def forward(self, x, y=None):
        return self.a(x) + (0 if y is None else self.b(y))


def test_calibration_data_as_tensors_tuples_and_dicts():
    """The documented forms of calibration data give the same static scales."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(4, 16, generator=g) for _ in range(3)]
    ys = [torch.randn(4, 16, generator=g) * 3 for _ in range(3)]
    cfg = QuantConfig(act_dtype="int8")
    as_tuples = qmlir.quantize(TwoInputs(), list(zip(xs, ys)), cfg, progress=False)
    as_dicts = qmlir.quantize(TwoInputs(), [{"x": x, "y": y} for x, y in zip(xs, ys)], cfg, progress=False)
    for q in (as_tuples, as_dicts):
        assert math.isclose(q.a.act_scale, float(torch.cat(xs).abs().max()) / 127, rel_tol=1e-6)
        assert math.isclose(q.b.act_scale, float(torch.cat(ys).abs().max()) / 127, rel_tol=1e-6)
    only_x = qmlir.quantize(torch.nn.Sequential(torch.nn.Linear(16, 8)), xs, QuantConfig(act_dtype="int8", skip=[]),
                            progress=False)
    assert math.isclose(only_x[0].act_scale, as_tuples.a.act_scale, rel_tol=1e-6)


def test_config_as_yaml_path_dict_and_preset(tmp_path):
    """quantize's config: a QuantConfig, a dict, a YAML path or a preset name, all the same model."""
    path = tmp_path / "cfg.yaml"
    cfg = QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=16)
    cfg.to_yaml(path)
    model = tiny_llama()
    x = calib_ids(1, 8, seed=4)[0]
    with torch.no_grad():
        outs = [qmlir.quantize(model, None, c, progress=False)(x).logits
                for c in (cfg, cfg.to_dict(), str(path), path.name and str(path))]
        preset = qmlir.quantize(model, None, "int8-weight-only", progress=False)(x).logits
        explicit = qmlir.quantize(model, None, QuantConfig(), progress=False)(x).logits
    for o in outs[1:]:
        assert torch.equal(o, outs[0])
    assert torch.equal(preset, explicit)


def test_auto_choice_is_reported_and_saved(tmp_path):
    """The model-level search scores no smoothing, every grid alpha and the per-layer choice on
    held-out batches and keeps the least; the choice and its scores are in the report, the
    summary and the saved file."""
    q = qmlir.quantize(planted_llama(), calib_ids(16, 32), QuantConfig(**W8A8, smoothquant_alpha="auto"),
                       progress=False)
    choice = q.qmlir_quant.search
    assert set(choice.scores) == {"none", "0", "0.25", "0.5", "0.75", "1", "per-layer"}
    best = min(choice.scores, key=choice.scores.get)
    assert best == ("per-layer" if choice.per_group is not None else
                    "none" if choice.alpha is None else f"{choice.alpha:g}")
    assert choice.scores["none"] > 2 * choice.scores[best]  # the planted outliers need smoothing
    assert "auto chose" in q.qmlir_quant.summary()
    assert q.qmlir_quant.config.smoothquant_alpha == "auto"
    loaded = qmlir.load_quantized(planted_llama(), qmlir.save_quantized(q, tmp_path / "auto.safetensors"))
    ids = calib_ids(1, 16, seed=9)[0]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, q(ids).logits)
    assert loaded.qmlir_quant.search == choice


@pytest.mark.parametrize("act", ["none", "int8"])
def test_sequential_gptq_takes_hessians_from_the_quantized_prefix(act):
    """gptq_sequential: block 0 sees the float inputs either way (same integers); block 1 sees
    the outputs of the quantized block 0 (other integers); both are close to the float model.
    A model without a block list quantizes as the non-sequential GPTQ does."""
    model = tiny_llama()
    base = dict(weight_dtype="int4" if act == "none" else "int8", weight_granularity="group", group_size=16,
                weight_symmetric=act != "none", weight_algorithm="gptq", act_dtype=act)
    seq = qmlir.quantize(model, calib_ids(8, 32), QuantConfig(**base, gptq_sequential=True), progress=False)
    flat = qmlir.quantize(model, calib_ids(8, 32), QuantConfig(**base), progress=False)
    blocks = seq.model.layers, flat.model.layers
    assert torch.equal(blocks[0][0].self_attn.q_proj.weight, blocks[1][0].self_attn.q_proj.weight)
    assert not torch.equal(blocks[0][1].self_attn.q_proj.weight, blocks[1][1].self_attn.q_proj.weight)
    assert not torch.equal(blocks[0][0].mlp.down_proj.weight, blocks[1][0].mlp.down_proj.weight) or \
        not torch.equal(blocks[0][1].mlp.down_proj.weight, blocks[1][1].mlp.down_proj.weight)
    held = calib_ids(8, 16, seed=9)
    with torch.no_grad():
        ref = torch.cat([model(i).logits for i in held])
        for q in (seq, flat):
            assert sqnr_db(ref, torch.cat([q(i).logits for i in held])) >= (18 if act == "none" else 30)
    lin = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    data = [torch.randn(8, 32) for _ in range(4)]
    a = qmlir.quantize(lin, data, QuantConfig(**base, gptq_sequential=True, skip=[]), progress=False)
    b = qmlir.quantize(lin, data, QuantConfig(**base, skip=[]), progress=False)
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[2].weight, b[2].weight)


class Shared(torch.nn.Module):
    """`fc` runs twice per batch, `head` (skipped) last."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.fc(self.fc(x)))


def test_calibration_stops_after_the_last_observed_layer():
    """From the second batch on, a batch ends once every observed layer has run (the skipped
    head does not run), unless the first batch showed a layer running twice; statistics are
    those of a full run either way."""
    from qmlir.quantization.calibration import calibrate
    model = tiny_llama()
    heads = []
    model.lm_head.register_forward_hook(lambda *a: heads.append(1))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    mods = dict(model.named_modules())
    data = calib_ids(4, 16)
    obs = calibrate(model, data, {n: mods[n] for n in names}, progress=False)
    assert len(heads) == 1
    seen = []
    h = mods["model.layers.1.mlp.down_proj"].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        for ids in data:
            model(ids)
    h.remove()
    full = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])
    assert torch.equal(obs["model.layers.1.mlp.down_proj"].channel_max, full.amax(0))
    assert obs["model.layers.1.mlp.down_proj"].rows_seen == full.shape[0]

    shared = Shared()
    xs = [torch.randn(3, 8) for _ in range(3)]
    obs = calibrate(shared, xs, {"fc": shared.fc}, progress=False)
    assert obs["fc"].calls == 6 and obs["fc"].rows_seen == 18  # both calls of every batch
