"""SmolLM2-135M quantized (qmlir.quantize): perplexity bounds on the first 1024 tokens of the
GPL-3 text, calibrated on another text (CPython standard-library docstrings), and one quantized
model compiled end to end. The README's accuracy table comes from examples/quant_table.py."""
import pytest
import torch

import qmlir
from qmlir import zoo
from qmlir.evaluation import perplexity, spread_windows, token_windows


@pytest.fixture(scope="module")
def setup():
    model, tok = zoo.smollm2()
    windows = token_windows(tok, zoo.gpl3_text(), 1024, 512)
    calib = token_windows(tok, zoo.stdlib_docs_text(), 8 * 128, 128)
    fp32 = perplexity(lambda ids: model(ids).logits, windows)
    return model, windows, calib, fp32, tok


_QUANTIZED = {}


def quantized(setup, preset):
    """Each preset is quantized once per module (calibration is the slow part)."""
    if preset not in _QUANTIZED:
        model, _, calib = setup[:3]
        _QUANTIZED[preset] = qmlir.quantize(model, calib, preset, progress=False)
    return _QUANTIZED[preset]


def ppl(setup, preset, windows=None):
    q = quantized(setup, preset)
    return perplexity(lambda ids: q(ids).logits, windows or setup[1])


def test_int8_weight_only_within_1_percent(setup):
    assert ppl(setup, "int8-weight-only") <= setup[3] * 1.01


def test_int4_g128_round_to_nearest(setup):
    """Plain rounding, asymmetric (+23%) better than symmetric (+59%): held so that it cannot regress."""
    sym, asym = ppl(setup, "int4-g128"), ppl(setup, "int4-g128-asym")
    assert asym < sym
    assert asym <= setup[3] * 1.25, (setup[3], asym)


def test_int4_g128_gptq_within_15_percent(setup):
    """The issue's bound, Δppl <= 15%, with GPTQ (act order, static groups from an
    importance-weighted clipping search, attention-sink weighting) calibrated on 128 x 512 tokens
    spread over a larger standard-library docstring corpus: measured +12.4% (23.70 vs 21.09).
    Calibration is most of this test's time (~4 min on 2 cores)."""
    model, windows, _, fp32, tok = setup
    calib = spread_windows(tok, zoo.stdlib_docs_corpus(), 128, 512)
    q = qmlir.quantize(model, calib, "int4-g128-gptq", progress=False)
    p = perplexity(lambda ids: q(ids).logits, windows)
    assert p <= fp32 * 1.15, (fp32, p)


def test_smoothquant_beats_naive_w8a8(setup):
    """On the first 512 tokens (the eager integer reference is the slow part of this file)."""
    first = setup[1][:1]
    naive, smooth = ppl(setup, "w8a8-static", first), ppl(setup, "w8a8-smoothquant", first)
    assert smooth < naive * 0.8, (naive, smooth)


def test_compiled_int8_weight_only_smollm2_matches_eager(setup):
    """The whole quantized model compiled (64 tokens) against its eager reference. Weight-only,
    so the comparison is a float one. (W8A8 compiled models agree with eager layer by layer --
    test_quantization.py -- but over SmolLM2's 30 layers, f32 differences upstream of each
    activation quantization move values across int8 rounding boundaries and the flips
    compound: logit cosine 0.996 at 32 tokens, 0.98 at 64; `make demo` prints both perplexities.)"""
    q = quantized(setup, "int8-weight-only")
    ids = setup[1][0][:, :64]
    with torch.no_grad():
        eager = q(ids).logits
        compiled = qmlir.compile(q, (ids,))(ids).logits
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3 * float(eager.abs().max()))
