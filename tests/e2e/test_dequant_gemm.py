"""The dequant_gemm kernel (qmlir/kernels/dequant_gemm.py) against a float64 reference, on its
edge shapes: M = 1/2/3/17 (row tiles of 4 and the rows left), N tails (masked vectors), K
blocks at larger M, int8 and int4 (signed and unsigned nibbles), per channel and per group,
with and without zero points, threaded and not; and the same IR through the scalar door
(the kernel switched off) giving the same numbers."""
import dataclasses

import numpy as np
import pytest
import torch

from qmlir.ir.dequant_matmul import DequantMatmul
from qmlir.kernels import base as kernel_base
from qmlir.kernels import dequant_gemm
from qmlir.target import Target, compile_mlir

NIBBLE_SIGNED = """
    %c4 = arith.constant 4 : i8
    %sl = arith.shli %b, %c4 : i8
    %lo = arith.shrsi %sl, %c4 : i8
    %hi = arith.shrsi %b, %c4 : i8"""
NIBBLE_UNSIGNED = """
    %c4 = arith.constant 4 : i8
    %c15 = arith.constant 15 : i8
    %lo = arith.andi %b, %c15 : i8
    %sh = arith.shrui %b, %c4 : i8
    %hi = arith.andi %sh, %c15 : i8"""
SELECT = """
    %k = linalg.index 2 : index
    %c2 = arith.constant 2 : index
    %r = arith.remui %k, %c2 : index
    %c0i = arith.constant 0 : index
    %even = arith.cmpi eq, %r, %c0i : index
    %v = arith.select %even, %lo, %hi : i8"""


def _dense(a: np.ndarray) -> str:
    return "dense<[" + ", ".join("[" + ", ".join("%.9e" % v for v in row) + "]" for row in a) + "]>"


def ir_text(d: DequantMatmul, scales: np.ndarray, zps) -> str:
    rows = d.k // 2 if d.bits == 4 else d.k
    sr = d.scale_rows
    qmap = "(k floordiv 2, n)" if d.bits == 4 else "(k, n)"
    maps = [f"affine_map<(m, n, k) -> (m, k)>", f"affine_map<(m, n, k) -> {qmap}>",
            f"affine_map<(m, n, k) -> (k floordiv {d.group}, n)>"]
    ins, types = ["%x", "%q", "%s"], [f"tensor<{d.m}x{d.k}xf32>", f"tensor<{rows}x{d.n}xi8>", f"tensor<{sr}x{d.n}xf32>"]
    args = ["%a: f32", "%b: i8", "%sc: f32"]
    consts = f"  %s = arith.constant {_dense(scales)} : tensor<{sr}x{d.n}xf32>\n"
    if zps is not None:
        maps.append(maps[2])
        ins.append("%zp")
        types.append(types[2])
        args.append("%z: f32")
        consts += f"  %zp = arith.constant {_dense(zps)} : tensor<{sr}x{d.n}xf32>\n"
    maps.append("affine_map<(m, n, k) -> (m, n)>")
    if d.bits == 4:
        body = (NIBBLE_SIGNED if d.signed else NIBBLE_UNSIGNED) + SELECT + "\n    %f = arith.sitofp %v : i8 to f32"
    else:
        body = "\n    %f = arith.sitofp %b : i8 to f32"
    if zps is not None:
        body += "\n    %d = arith.subf %f, %z : f32\n    %w = arith.mulf %d, %sc : f32"
    else:
        body += "\n    %w = arith.mulf %f, %sc : f32"
    return f"""
func.func @f(%x: tensor<{d.m}x{d.k}xf32>, %q: tensor<{rows}x{d.n}xi8>) -> tensor<{d.m}x{d.n}xf32> {{
{consts}  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<{d.m}x{d.n}xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e : tensor<{d.m}x{d.n}xf32>) -> tensor<{d.m}x{d.n}xf32>
  %y = linalg.generic {{indexing_maps = [{', '.join(maps)}], iterator_types = ["parallel", "parallel", "reduction"]}}
      ins({', '.join(ins)} : {', '.join(types)}) outs(%acc : tensor<{d.m}x{d.n}xf32>) {{
  ^bb0({', '.join(args)}, %o: f32):{body}
    %p = arith.mulf %a, %w : f32
    %sum = arith.addf %o, %p : f32
    linalg.yield %sum : f32
  }} -> tensor<{d.m}x{d.n}xf32>
  return %y : tensor<{d.m}x{d.n}xf32>
}}"""


def case(d: DequantMatmul, seed: int):
    """(IR text, x, stored q, float64 reference)."""
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if d.bits == 8 else ((-8, 8) if d.signed else (0, 16))
    q = rng.integers(lo, hi, size=(d.k, d.n))
    q[0, :] = lo  # the extremes of the range
    q[-1, :] = hi - 1
    scales = (rng.random((d.scale_rows, d.n)) * 0.02 + 0.001).astype(np.float32)
    zps = rng.integers(lo, hi, size=(d.scale_rows, d.n)).astype(np.float32) if d.zero_point else None
    x = torch.from_numpy(rng.standard_normal((d.m, d.k)).astype(np.float32))
    if d.bits == 4:
        nib = (q & 15).astype(np.uint8)
        stored = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).view(np.int8)
    else:
        stored = q.astype(np.int8)
    groups = np.repeat(np.arange(d.scale_rows), d.group)
    w = (q - (zps[groups] if zps is not None else 0)) * scales[groups].astype(np.float64)
    ref = x.double().numpy() @ w
    return ir_text(d, scales, zps), x, torch.from_numpy(np.ascontiguousarray(stored)), torch.from_numpy(ref)


CASES = [
    # m, n, k, bits, signed, group, zero point
    (1, 256, 256, 4, True, 128, False),     # one full 256-column tile, two groups
    (1, 576, 640, 4, True, 128, False),     # SmolLM2's K padded to groups, N = 2 tiles + 64 masked
    (1, 200, 128, 4, False, 32, True),      # unsigned nibbles with zero points; no full tile
    (2, 72, 64, 4, False, 64, True),        # M = 2: one row tile of 2; N = 64 + 8
    (3, 13, 50, 8, True, 50, False),        # per channel, K not a multiple of anything
    (17, 200, 96, 8, True, 96, True),       # four row tiles of 4 and one single row; asymmetric
    (17, 64, 1024, 4, True, 128, False),    # K blocks of 512 at M > 4
    (5, 48, 96, 8, True, 32, False),        # int8 in groups
    (6, 40, 600, 8, True, 600, False),      # per channel with K blocked by a divisor (300)
]


@pytest.mark.parametrize("m,n,k,bits,signed,group,zp", CASES)
def test_dequant_gemm_matches_float64(m, n, k, bits, signed, group, zp):
    d = DequantMatmul(m=m, n=n, k=k, bits=bits, signed=signed, group=group, zero_point=zp)
    text, x, q, ref = case(d, m * 1000 + n + k)
    out = compile_mlir(text, target=Target.cpu(features=(), threads=2))(x, q)[0]
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-4 * float(ref.abs().max()))


def test_dequant_gemm_threaded():
    """A weight of 4 MB splits its column tiles over both threads; the result is the same."""
    d = DequantMatmul(m=1, n=4096 + 48, k=1024, bits=8, signed=True, group=1024, zero_point=False)
    cfg = dequant_gemm.tiles(d, 2)
    assert cfg["tasks"] == 2 and cfg["nv"] == 16
    text, x, q, ref = case(d, 7)
    out = compile_mlir(text, target=Target.cpu(features=(), threads=2))(x, q)[0]
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("m,n,k,bits,signed,group,zp", [CASES[2], CASES[5]])
def test_scalar_door_computes_the_same(monkeypatch, m, n, k, bits, signed, group, zp):
    """The dequantizing matmul run as written (convert-linalg-to-loops: the kernel declines
    every op) and through the kernel: the same numbers up to float summation order."""
    d = DequantMatmul(m=m, n=n, k=k, bits=bits, signed=signed, group=group, zero_point=zp)
    text, x, q, ref = case(d, 11)
    fast = compile_mlir(text, target=Target.cpu(features=(), threads=1))(x, q)[0]
    off = dataclasses.replace(dequant_gemm.KERNEL, select=lambda op, threads: None)
    monkeypatch.setitem(kernel_base._KERNELS, "dequant_gemm", off)
    slow = compile_mlir(text, target=Target.cpu(features=(), threads=1))(x, q)[0]
    torch.testing.assert_close(slow.double(), ref, rtol=2e-5, atol=2e-4 * float(ref.abs().max()))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
