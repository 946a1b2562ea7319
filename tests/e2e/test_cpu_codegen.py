"""The CPU code generation: NT matmuls (transpose folded), their tiled/vectorized/threaded
schedule, on shapes that divide the tiles and shapes that do not. Compared with torch."""
import pytest
import torch

from qmlir.kernels import portable as matmul_tiling
from qmlir.target import compile_mlir

LINEAR = """
func.func @f(%x: tensor<{M}x{K}x{T}>, %w: tensor<{N}x{K}x{T}>) -> tensor<{M}x{N}x{T}> {{
  %z = arith.constant 0.0 : f32
  %et = tensor.empty() : tensor<{K}x{N}x{T}>
  %t = linalg.transpose ins(%w : tensor<{N}x{K}x{T}>) outs(%et : tensor<{K}x{N}x{T}>) permutation = [1, 0]
  %e = tensor.empty() : tensor<{M}x{N}xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>
  %y = linalg.matmul ins(%x, %t : tensor<{M}x{K}x{T}>, tensor<{K}x{N}x{T}>) outs(%f : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>
  %eo = tensor.empty() : tensor<{M}x{N}x{T}>
  %o = linalg.generic {{indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                       iterator_types = ["parallel", "parallel"]}} ins(%y : tensor<{M}x{N}xf32>) outs(%eo : tensor<{M}x{N}x{T}>) {{
  ^bb0(%a: f32, %b: {T}):
    %c = {CAST}
    linalg.yield %c : {T}
  }} -> tensor<{M}x{N}x{T}>
  return %o : tensor<{M}x{N}x{T}>
}}"""


def linear_ir(m, n, k, dtype=torch.float32):
    t = {torch.float32: "f32", torch.bfloat16: "bf16"}[dtype]
    cast = "arith.addf %a, %a : f32" if t == "f32" else "arith.truncf %a : f32 to bf16"
    src = LINEAR.format(M=m, N=n, K=k, T=t, CAST=cast)
    return src.replace("%z = arith.constant 0.0 : f32", "%z = arith.constant 0.0 : f32") if t == "f32" else src


@pytest.mark.parametrize("m,n,k", [
    (128, 512, 1024),   # threaded, K tiled
    (1, 4096, 4096),    # decode: 1x8 register tile, long K
    (16, 256, 2048),    # K tiled by 1024
    (3, 10, 24),        # odd M and N: 1x2 register tiles, K by 8
    (5, 7, 100),        # K by 4
    (2, 3, 13),         # no vector width divides K: scalar path
])
def test_nt_linear_matches_torch(m, n, k):
    g = torch.Generator().manual_seed(m * 7 + n)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    out = compile_mlir(linear_ir(m, n, k))(x, w)[0]
    torch.testing.assert_close(out, 2 * (x @ w.T), rtol=1e-4, atol=1e-3)


def test_nt_linear_single_thread(monkeypatch):
    monkeypatch.setenv("QMLIR_NUM_THREADS", "1")
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(64, 512, generator=g), torch.randn(256, 512, generator=g)
    out = compile_mlir(linear_ir(64, 256, 512))(x, w)[0]
    torch.testing.assert_close(out, 2 * (x @ w.T), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dot", [True, False], ids=["avx512bf16-dot", "portable"])
@pytest.mark.parametrize("m,n,k", [(32, 64, 256), (1, 512, 2048), (3, 6, 96), (128, 512, 1024)])
def test_nt_linear_bf16_accumulates_in_f32(monkeypatch, dot, m, n, k):
    from qmlir.target import host as cpu_features
    if dot and not cpu_features.has("avx512_bf16"):
        pytest.skip("this CPU has no AVX512_BF16")
    monkeypatch.setenv("QMLIR_CPU_DISABLE", "" if dot else "avx512_bf16")
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(m, k, generator=g).bfloat16(), torch.randn(n, k, generator=g).bfloat16()
    out = compile_mlir(linear_ir(m, n, k, torch.bfloat16))(x, w)[0]
    ref = (x.float() @ w.float().T).bfloat16()  # exact products, f32 sums, one rounding
    torch.testing.assert_close(out.float(), ref.float(), rtol=2 ** -7, atol=1e-2)


def test_batched_nt_matmul():
    src = """
func.func @f(%q: tensor<3x16x64xf32>, %k: tensor<3x24x64xf32>) -> tensor<3x16x24xf32> {
  %z = arith.constant 0.0 : f32
  %et = tensor.empty() : tensor<3x64x24xf32>
  %t = linalg.transpose ins(%k : tensor<3x24x64xf32>) outs(%et : tensor<3x64x24xf32>) permutation = [0, 2, 1]
  %e = tensor.empty() : tensor<3x16x24xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x16x24xf32>) -> tensor<3x16x24xf32>
  %y = linalg.batch_matmul ins(%q, %t : tensor<3x16x64xf32>, tensor<3x64x24xf32>) outs(%f : tensor<3x16x24xf32>) -> tensor<3x16x24xf32>
  return %y : tensor<3x16x24xf32>
}"""
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(3, 16, 64, generator=g), torch.randn(3, 24, 64, generator=g)
    out = compile_mlir(src)(q, k)[0]
    torch.testing.assert_close(out, q @ k.transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_nt_schedule_choices():
    """The tile sizes divide the shape; big products go to threads, small ones do not."""
    from mlir import ir
    with ir.Context():
        big = ir.Module.parse(linear_ir(128, 4096, 4096))
        small = ir.Module.parse(linear_ir(1, 64, 64))
        from qmlir.passes import transpose_matmul_fold
        for mod in (big, small):
            transpose_matmul_fold.run(mod)
        (mm_big,) = [o for o in big.body.operations[0].regions[0].blocks[0].operations if o.operation.name == "linalg.matmul"]
        (mm_small,) = [o for o in small.body.operations[0].regions[0].blocks[0].operations if o.operation.name == "linalg.matmul"]
        assert matmul_tiling._schedule(mm_big.operation, 2) == ("nt", 0, 4, 4, 16, 256, 1024, True)
        assert matmul_tiling._schedule(mm_small.operation, 2) == ("nt", 0, 1, 8, 16, 64, 64, False)


WEIGHT_ONLY = """
func.func @f(%x: tensor<{M}x{K}xf32>, %q: tensor<{K}x{N}xi8>) -> tensor<{M}x{N}xf32> {{
  %s = arith.constant dense<{S}> : tensor<{N}xf32>
  %zp = arith.constant dense<0> : tensor<{N}xi64>
  %e = tensor.empty() : tensor<{K}x{N}xf32>
  %w = linalg.generic {{indexing_maps = [affine_map<(k, n) -> (k, n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (k, n)>],
                       iterator_types = ["parallel", "parallel"]}} ins(%q, %s, %zp : tensor<{K}x{N}xi8>, tensor<{N}xf32>, tensor<{N}xi64>) outs(%e : tensor<{K}x{N}xf32>) {{
  ^bb0(%a: i8, %b: f32, %c: i64, %o: f32):
    %z = arith.sitofp %c : i64 to f32
    %f = arith.sitofp %a : i8 to f32
    %d = arith.subf %f, %z : f32
    %m = arith.mulf %d, %b : f32
    linalg.yield %m : f32
  }} -> tensor<{K}x{N}xf32>
  %c0 = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<{M}x{N}xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e2 : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>
  %y = linalg.matmul ins(%x, %w : tensor<{M}x{K}xf32>, tensor<{K}x{N}xf32>) outs(%acc : tensor<{M}x{N}xf32>) -> tensor<{M}x{N}xf32>
  return %y : tensor<{M}x{N}xf32>
}}"""


@pytest.mark.parametrize("m,n,k", [(1, 512, 1024), (8, 64, 48), (3, 24, 16)])
def test_weight_only_matmul_reads_int8_weights(m, n, k):
    """qmlir-fold-dequant-into-matmul (in the CPU pipeline) against the dequantized product."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(m, k, generator=g)
    q = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int8)
    s = torch.rand(n, generator=g) * 0.01 + 0.001
    src = WEIGHT_ONLY.format(M=m, N=n, K=k, S="[" + ", ".join("%.9g" % v for v in s.tolist()) + "]")
    out = compile_mlir(src)(x, q)[0]
    torch.testing.assert_close(out, x @ (q.float() * s), rtol=1e-4, atol=1e-4)


INT_MATMUL = """
func.func @f(%x: tensor<{M}x{K}xi8>, %w: tensor<{K}x{N}xi8>) -> tensor<{M}x{N}xi32> {{
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<{M}x{N}xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<{M}x{N}xi32>) -> tensor<{M}x{N}xi32>
  %y = linalg.matmul ins(%x, %w : tensor<{M}x{K}xi8>, tensor<{K}x{N}xi8>) outs(%f : tensor<{M}x{N}xi32>) -> tensor<{M}x{N}xi32>
  return %y : tensor<{M}x{N}xi32>
}}"""


@pytest.mark.parametrize("vnni", [True, False], ids=["avx512vnni", "portable"])
@pytest.mark.parametrize("m,n,k", [(8, 128, 64), (1, 256, 4096), (6, 64, 12), (128, 512, 3072), (5, 48, 20)])
def test_int8_matmul_is_exact(monkeypatch, vnni, m, n, k):
    """i8 x i8 -> i32 (W8A8's product): exact, extremes included (-128 * -128 sums)."""
    from qmlir.target import host as cpu_features
    if vnni and not cpu_features.has("avx512_vnni"):
        pytest.skip("this CPU has no AVX512_VNNI")
    monkeypatch.setenv("QMLIR_CPU_DISABLE", "" if vnni else "avx512_vnni")
    g = torch.Generator().manual_seed(m + n + k)
    x = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
    w = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int8)
    x[0, :] = -128
    w[:, 0] = -128
    out = compile_mlir(INT_MATMUL.format(M=m, N=n, K=k))(x, w)[0]
    assert torch.equal(out, x.int() @ w.int())


EXP = """
func.func @f(%x: tensor<{N}xf32>) -> tensor<{N}xf32> {{
  %e = tensor.empty() : tensor<{N}xf32>
  %y = linalg.generic {{indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>],
                       iterator_types = ["parallel"]}} ins(%x : tensor<{N}xf32>) outs(%e : tensor<{N}xf32>) {{
  ^bb0(%a: f32, %o: f32):
    %v = math.exp %a : f32
    linalg.yield %v : f32
  }} -> tensor<{N}xf32>
  return %y : tensor<{N}xf32>
}}"""


def test_polynomial_exp_matches_torch():
    """qmlir-polynomial-exp (in the CPU pipeline): within 2 ulp of torch.exp over the normal
    range, exact at 0, 0 at and below the smallest normal's log (exp(-inf) = 0 for softmax's
    masked scores), inf above the largest, NaN kept."""
    grid = torch.linspace(-87.3, 88.3, 200_001)
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 88.37, 88.4, 100.0, -87.34, -90.0, -1e30, 1e30,
                            float("inf"), float("-inf"), float("nan")])
    x = torch.cat([grid, special])
    out = compile_mlir(EXP.format(N=x.numel()))(x)[0]
    ref = torch.exp(x.double())
    body = slice(0, grid.numel())
    ulp = (out[body].double() - ref[body]).abs() / torch.finfo(torch.float32).eps / ref[body]
    assert float(ulp.max()) <= 2.0
    s = out[grid.numel():]
    assert s[0] == 1.0 and s[1] == 1.0
    torch.testing.assert_close(s[2:4], torch.exp(special[2:4]))
    assert torch.isfinite(s[4]) and torch.isinf(s[5]) and torch.isinf(s[6])  # 88.37 < the limit
    assert s[7] == 0.0 and s[8] == 0.0 and s[9] == 0.0 and torch.isinf(s[10])
    assert torch.isinf(s[11]) and s[12] == 0.0 and torch.isnan(s[13])
