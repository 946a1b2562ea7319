"""SmolLM2-135M quantized (qmlir.quantize): perplexity bounds on the first 1024 tokens of two
texts (the GPL-3 licence and CPython's pydoc topics, both shipped in qmlir.data), calibrated on
a third (CPython standard-library docstrings), and one quantized model compiled end to end.

Every bound is asserted on a text its settings were not chosen on: the GPTQ settings were tuned
on GPL-3 perplexity, so GPTQ is held to its pydoc bound; round-to-nearest, int8 and the
SmoothQuant/outlier presets have no settings tuned on either text and are held on both. The
README's accuracy table comes from examples/quant_table.py."""
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


@pytest.fixture(scope="module")
def pydoc(setup):
    """(windows, f32 perplexity) of the second text."""
    model, tok = setup[0], setup[4]
    windows = token_windows(tok, zoo.pydoc_text(), 1024, 512)
    return windows, perplexity(lambda ids: model(ids).logits, windows)


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


def test_int8_weight_only_within_1_percent(setup, pydoc):
    assert ppl(setup, "int8-weight-only") <= setup[3] * 1.01
    assert ppl(setup, "int8-weight-only", pydoc[0]) <= pydoc[1] * 1.01


def test_int4_g128_round_to_nearest(setup):
    """Plain rounding, asymmetric (+23%) better than symmetric (+59%): held so that it cannot regress."""
    sym, asym = ppl(setup, "int4-g128"), ppl(setup, "int4-g128-asym")
    assert asym < sym
    assert asym <= setup[3] * 1.25, (setup[3], asym)


@pytest.mark.heavy
def test_int4_g128_gptq_on_held_out_text(setup, pydoc):
    """GPTQ (act order, static groups from an importance-weighted clipping search, attention-sink
    weighting) calibrated on 32 x 512 tokens spread over a larger docstring corpus (the README
    table's row uses 128 x 512: +6.4%; 64 x 512 measured +5.6%, 32 x 512 +6.5%, 15.17 vs 14.24,
    16 x 512 +7.3%). Its settings were chosen on GPL-3, so the bound is on pydoc. The Hessians
    (x^T x over every calibration token) and GPTQ's column loop are most of this test's time
    (~3 min on one core)."""
    model, _, _, _, tok = setup
    calib = spread_windows(tok, zoo.stdlib_docs_corpus(), 32, 512)
    q = qmlir.quantize(model, calib, "int4-g128-gptq", progress=False)
    p = perplexity(lambda ids: q(ids).logits, pydoc[0])
    assert p <= pydoc[1] * 1.08, (pydoc[1], p)


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
    # measured: max error 4.7e-6 of the largest logit (the f32 model compiled: 3.7e-6)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=2e-5 * float(eager.abs().max()))
