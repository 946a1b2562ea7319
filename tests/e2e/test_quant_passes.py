"""The MLIR-level quantization passes, numerically: run the IR before and after each pass.
SQNR = 10 log10(|y_float|^2 / |y - y_float|^2), against the f32 matmul."""
import re

import numpy as np
import pytest
import torch
from mlir import ir

from qmlir.passes import fuse_quantized_matmul, quantize_matmul, split_outliers
from qmlir.ir.quant import QuantPassError
from qmlir.target import compile_mlir

M, K, N = 32, 256, 64


def matmul_module(w: np.ndarray, attrs: str = "") -> str:
    k, n = w.shape
    wtxt = "dense<[" + ",".join("[" + ",".join("%.9g" % v for v in row) + "]" for row in w) + "]>"
    attr = f" {{{attrs}}}" if attrs else ""
    return f"""func.func @f(%x: tensor<{M}x{k}xf32>) -> tensor<{M}x{n}xf32> {{
  %w = arith.constant {wtxt} : tensor<{k}x{n}xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<{M}x{n}xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<{M}x{n}xf32>) -> tensor<{M}x{n}xf32>
  %y = linalg.matmul{attr} ins(%x, %w : tensor<{M}x{k}xf32>, tensor<{k}x{n}xf32>) outs(%f : tensor<{M}x{n}xf32>) -> tensor<{M}x{n}xf32>
  return %y : tensor<{M}x{n}xf32>
}}"""


def run_with(src: str, x: np.ndarray, *passes) -> np.ndarray:
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(src)
        for fn, kw in passes:
            assert fn(module, **kw) >= 1
        compiled = compile_mlir(str(module))
    return compiled(torch.from_numpy(x))[0].numpy()


def sqnr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((y - ref).astype(np.float64) ** 2).sum()))


def absmax_attrs(x: np.ndarray) -> str:
    ch = ",".join("%.9g" % v for v in np.abs(x).max(axis=0))
    return f"qmlir.act_absmax = {np.abs(x).max():.9g} : f32, qmlir.act_channel_absmax = dense<[{ch}]> : tensor<{x.shape[1]}xf32>"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    x_clean = rng.standard_normal((M, K)).astype(np.float32)
    x_out = x_clean.copy()
    cols = np.array([7, 100, 201, 230])
    x_out[:, cols] *= np.array([20.0, 35.0, 50.0, 60.0], np.float32)  # planted activation outliers
    return w, x_clean, x_out


@pytest.mark.parametrize("kw,bound", [
    (dict(act="none"), 38.0),
    (dict(act="static"), 30.0),
    (dict(act="dynamic"), 30.0),
    (dict(act="dynamic", granularity="group", group_size=64), 30.0),
    (dict(act="none", weight_type="i4", granularity="group", group_size=32), 14.0),
    (dict(act="static", weight_type="i4", granularity="group", group_size=32), 13.0),
])
def test_quantize_matmul_sqnr(data, kw, bound):
    w, x, _ = data
    ref = run_with(matmul_module(w), x)
    np.testing.assert_allclose(ref, x @ w, rtol=1e-4, atol=1e-4)
    y = run_with(matmul_module(w, absmax_attrs(x)), x, (quantize_matmul.run, kw))
    assert sqnr(y, ref) >= bound, sqnr(y, ref)


@pytest.mark.parametrize("kw", [dict(act="static"), dict(act="static", weight_type="i4", granularity="group", group_size=64)])
def test_fuse_equals_dequantized_path(data, kw):
    w, x, _ = data
    src = matmul_module(w, absmax_attrs(x))
    plain = run_with(src, x, (quantize_matmul.run, kw))
    fused = run_with(src, x, (quantize_matmul.run, kw), (fuse_quantized_matmul.run, {}))
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


def test_fuse_with_activation_zero_point(data):
    """An asymmetric activation type: the zero-point correction uses the weight's column sums."""
    w, x, _ = data
    src = matmul_module(w, absmax_attrs(x))
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(src)
        quantize_matmul.run(module, act="static")
        text = str(module)
    # make the per-tensor activation type asymmetric: zero point -5
    asym, n = re.subn(r"!quant\.uniform<i8:f32, ([0-9.e+-]+)>", r"!quant.uniform<i8:f32, \1:-5>", text)
    assert n >= 2 and ":-5>" in asym
    ys = []
    for fuse in (False, True):
        with ir.Context(), ir.Location.unknown():
            module = ir.Module.parse(asym)
            if fuse:
                assert fuse_quantized_matmul.run(module) == 1
            ys.append(compile_mlir(str(module))(torch.from_numpy(x))[0].numpy())
    np.testing.assert_allclose(ys[1], ys[0], rtol=1e-5, atol=1e-5 * np.abs(ys[0]).max())


def test_planted_outliers_static(data):
    w, x_clean, x_out = data
    clean = sqnr(run_with(matmul_module(w, absmax_attrs(x_clean)), x_clean, (quantize_matmul.run, dict(act="static"))),
                 x_clean @ w)
    src = matmul_module(w, absmax_attrs(x_out))
    ref = x_out @ w
    naive = sqnr(run_with(src, x_out, (quantize_matmul.run, dict(act="static"))), ref)
    split = sqnr(run_with(src, x_out, (split_outliers.run, dict(threshold=6.0, mode="static"))), ref)
    fused = sqnr(run_with(src, x_out, (split_outliers.run, dict(threshold=6.0, mode="static")),
                          (fuse_quantized_matmul.run, {})), ref)
    print(f"SQNR dB: outlier-free int8 {clean:.2f}, naive W8A8 {naive:.2f}, split {split:.2f}, split+fused {fused:.2f}")
    assert naive <= clean - 10.0
    assert abs(split - clean) <= 1.0 or split >= clean
    assert abs(fused - split) <= 0.1


def test_planted_outliers_dynamic(data):
    w, x_clean, x_out = data
    clean = sqnr(run_with(matmul_module(w), x_clean, (quantize_matmul.run, dict(act="dynamic"))), x_clean @ w)
    ref = x_out @ w
    src = matmul_module(w)
    split = sqnr(run_with(src, x_out, (split_outliers.run, dict(threshold=6.0, mode="dynamic"))), ref)
    per_token = sqnr(run_with(src, x_out, (quantize_matmul.run, dict(act="dynamic"))), ref)
    print(f"SQNR dB: outlier-free per-token {clean:.2f}, per-token with outliers {per_token:.2f}, split {split:.2f}")
    assert abs(split - clean) <= 1.0 or split >= clean


def test_threshold_inf_is_pure_int8_bit_for_bit(data):
    w, _, x_out = data
    src = matmul_module(w, absmax_attrs(x_out))
    pure = run_with(src, x_out, (quantize_matmul.run, dict(act="static")))
    split = run_with(src, x_out, (split_outliers.run, dict(threshold=float("inf"), mode="static")))
    assert np.array_equal(split, pure)
    pure_dyn = run_with(src, x_out, (quantize_matmul.run, dict(act="dynamic")))
    split_dyn = run_with(src, x_out, (split_outliers.run, dict(threshold=float("inf"), mode="dynamic")))
    assert np.array_equal(split_dyn, pure_dyn)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_threshold_zero_is_the_float_result(data, mode):
    w, _, x_out = data
    src = matmul_module(w, absmax_attrs(x_out))
    floating = run_with(src, x_out)
    split = run_with(src, x_out, (split_outliers.run, dict(threshold=0.0, mode=mode, outlier_type="f32")))
    np.testing.assert_allclose(split, floating, rtol=1e-6, atol=1e-6 * np.abs(floating).max())


def test_static_split_needs_calibration(data):
    w, _, x_out = data
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(matmul_module(w))
        with pytest.raises(QuantPassError, match="qmlir.act_channel_absmax"):
            split_outliers.run(module, mode="static")


@pytest.mark.parametrize("low,torch_low", [("bf16", torch.bfloat16), ("f16", torch.float16)])
def test_mixed_precision_matmul(data, low, torch_low):
    """Operands rounded to bf16/f16, products summed in f32: equal to PyTorch's rounding of the
    operands followed by an f32 matmul (up to summation order)."""
    from qmlir.passes import mixed_precision
    w, x, _ = data
    y = run_with(matmul_module(w), x, (mixed_precision.run, dict(type=low)))
    ref = (torch.from_numpy(x).to(torch_low).float() @ torch.from_numpy(w).to(torch_low).float()).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert sqnr(y, x @ w) < 80  # it really ran in low precision (f32 alone would be ~130 dB)


def test_mixed_precision_keeps_unlisted_ops_in_f32(data):
    from qmlir.passes import mixed_precision
    w, x, _ = data
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(matmul_module(w))
        assert mixed_precision.run(module, ops="batch_matmul") == 0
        assert "bf16" not in str(module)
        with pytest.raises(QuantPassError, match="unknown op kind"):
            mixed_precision.run(module, ops="softmax")


def test_mixed_precision_conv_from_an_imported_model():
    import qmlir
    from qmlir.passes import mixed_precision
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1).eval()
    x = torch.randn(2, 3, 8, 8)
    graph = qmlir.import_model(conv, (x,))
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.parse(graph.mlir)
        assert mixed_precision.run(module, type="bf16") == 1
        compiled = compile_mlir(str(module))
    out = compiled(conv.weight.detach(), conv.bias.detach(), x)[0] if graph.inputs[0].shape == (8, 3, 3, 3) \
        else compiled(x, conv.weight.detach(), conv.bias.detach())[0]
    ref = torch.nn.functional.conv2d(x.bfloat16().float(), conv.weight.detach().bfloat16().float(), conv.bias.detach(),
                                     padding=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
