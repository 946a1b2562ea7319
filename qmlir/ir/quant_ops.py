"""The quantized linear layers as PyTorch custom ops (`torch.ops.qmlir.*`), each with an eager
reference implementation of exact integer semantics and a fake (meta) implementation.

Why custom ops: TorchDynamo and AOT autograd keep a custom op as one node, so the importer sees
a whole quantized linear (weights, scales, activation quantization, outlier channels) and
emits it in the quant dialect (qmlir/dialect_ops/quantized.py) instead of rediscovering
integer matmuls in decomposed ATen arithmetic. The eager implementation is the reference the
compiled code is tested against: integer products are exact (i8 x i8 summed in f64, exact
below 2^53, then i32), and every float step is the one the IR performs, in f32, in the same
order (quantize: x / s, round half to even, + zp, saturate, NaN -> zp; rescale: f32(acc -
zp * colsum) * (s_x * s_w), summed over weight groups in order).

x is 2-D [M, K]; weights are [Kp, N] storage (see quant_storage.py), x is zero-padded to Kp.
"""
from __future__ import annotations

from typing import Optional

import torch

from qmlir.ir.quant_storage import dequantize_weight, expand_scales, unpack_panels

def _pad(x: torch.Tensor, Kp: int) -> torch.Tensor:
    K = x.shape[1]
    return x if K == Kp else torch.nn.functional.pad(x, (0, Kp - K))

def _div(x: torch.Tensor, s: float) -> torch.Tensor:
    """x / s in f32 as a true division (PyTorch may turn division by a Python scalar into a
    multiplication by its reciprocal, which rounds differently)."""
    return x / torch.full_like(x, s)

def quantize_static(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Per-tensor int8: clamp(round_half_even(x / s) + zp, -128, 127), NaN -> zp."""
    r = torch.round(_div(x, scale)) + float(zero_point)
    r = torch.clamp(r, -128.0, 127.0)
    r = torch.where(torch.isnan(x), torch.full_like(r, float(zero_point)), r)
    return r.to(torch.int8)

def quantize_per_token(x: torch.Tensor) -> tuple:
    """Dynamic per-row int8: s = max|x_m| / 127 (1 for a zero row), q = clamp(round(x / s), -127, 127)."""
    amax = x.abs().amax(dim=1)
    scale = torch.where(amax == 0, torch.ones_like(amax), _div(amax, 127.0))
    q = torch.clamp(torch.round(x / scale[:, None]), -127.0, 127.0).to(torch.int8)
    return q, scale

def quantize_blocks(x: torch.Tensor, block: int) -> tuple:
    """Dynamic int8 per block of `block` columns of each row (llama.cpp's Q8_0 activations):
    s[m, b] = max|x[m, b*B:(b+1)*B]| / 127 (1 for a zero block), q = clamp(round(x / s), -127, 127).
    x [M, Kp] with Kp % block == 0; returns (q [M, Kp] int8, s [M, Kp / block] f32)."""
    M, Kp = x.shape
    xb = x.reshape(M, Kp // block, block)
    amax = xb.abs().amax(dim=2)
    scale = torch.where(amax == 0, torch.ones_like(amax), _div(amax, 127.0))
    q = torch.clamp(torch.round(xb / scale[:, :, None]), -127.0, 127.0).to(torch.int8)
    return q.reshape(M, Kp), scale


def block_matmul_reference(xq: torch.Tensor, x_scales: torch.Tensor, wq: torch.Tensor, w_scales: torch.Tensor,
                           block: int) -> torch.Tensor:
    """sum_b f32(sum_{k in b} xq*wq) * (s_x[m, b] * s_w[b, n]) over blocks b in order: the rescale
    of the IR (qmlir.ir.block_matmul). w_scales [Kp / block, N]."""
    M, Kp = xq.shape
    N = wq.shape[1]
    blocks = Kp // block
    sw = w_scales.reshape(blocks, N)
    acc = (xq.reshape(M, blocks, block).transpose(0, 1).to(torch.float64)
           @ wq.reshape(blocks, block, N).to(torch.float64)).to(torch.int32)  # [blocks, M, N], exact
    out = torch.zeros(M, N, dtype=torch.float32)
    for b in range(blocks):
        out = out + acc[b].to(torch.float32) * (x_scales[:, b:b + 1] * sw[b][None, :])
    return out


def block_weight_scales(scales: torch.Tensor, Kp: int, N: int, group_size: int, block: int) -> torch.Tensor:
    """Weight scales per activation block: [Kp / block, N] (a weight group spans group / block
    blocks; per-channel scales repeat)."""
    if group_size:
        return scales.reshape(Kp // group_size, N).repeat_interleave(group_size // block, dim=0)
    return scales.reshape(1, N).expand(Kp // block, N).contiguous()


def int_matmul_reference(xq: torch.Tensor, x_scale, x_zp: int, wq: torch.Tensor, w_scales: torch.Tensor,
                         group_size: int) -> torch.Tensor:
    """sum_g f32(sum_{k in g} xq*wq - zp * colsum_g(wq)) * (s_x * s_w[g]): the rescale of the IR."""
    M, Kp = xq.shape
    N = wq.shape[1]
    groups = Kp // group_size if group_size else 1
    G = Kp // groups
    scales = w_scales.reshape(groups, N) if group_size else expand_scales(w_scales, Kp, 0).expand(1, N)
    s_x = x_scale[:, None] if isinstance(x_scale, torch.Tensor) else torch.tensor(x_scale, dtype=torch.float32)
    out = torch.zeros(M, N, dtype=torch.float32)
    for g in range(groups):
        xg, wg = xq[:, g * G:(g + 1) * G], wq[g * G:(g + 1) * G]
        acc = (xg.to(torch.float64) @ wg.to(torch.float64)).to(torch.int64)
        corr = int(x_zp) * wg.to(torch.int64).sum(dim=0)
        v = (acc - corr[None, :]).to(torch.int32).to(torch.float32)
        out = out + v * (s_x * scales[g][None, :])
    return out

def outlier_part(x: torch.Tensor, idx: Optional[torch.Tensor], w: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """x[:, idx] @ w, both rounded to w's dtype and multiplied with f32 accumulation."""
    if idx is None or idx.numel() == 0:
        return None
    xo = x[:, idx].to(w.dtype).to(torch.float32)
    return xo @ w.to(torch.float32)

def regular_columns(x: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
    """x with the outlier columns set to 0 (selected, not multiplied: a NaN there is dropped too)."""
    if idx is None or idx.numel() == 0:
        return x
    keep = torch.ones(x.shape[1], dtype=torch.bool)
    keep[idx] = False
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype))

@torch.library.custom_op("qmlir::linear_weight_only", mutates_args=())
def linear_weight_only(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
                       zero_points: Optional[torch.Tensor], bits: int, group_size: int) -> torch.Tensor:
    """y = x @ ((q - zp) * s): int8 or int4 (packed) weights dequantized to f32 in the kernel."""
    w = dequantize_weight(weight, scales, bits, group_size, zero_points)
    return _pad(x, w.shape[0]) @ w

@torch.library.custom_op("qmlir::linear_w8a8", mutates_args=())
def linear_w8a8(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, act_scale: float,
                act_zero_point: int, group_size: int, outlier_idx: Optional[torch.Tensor],
                outlier_weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Static W8A8: x quantized per tensor with the calibrated (scale, zero point); i8 x i8 -> i32."""
    xr = regular_columns(x, outlier_idx)
    xq = quantize_static(_pad(xr, weight.shape[0]), act_scale, act_zero_point)
    y = int_matmul_reference(xq, act_scale, act_zero_point, weight, scales, group_size)
    yo = outlier_part(x, outlier_idx, outlier_weight)
    return y if yo is None else y + yo

@torch.library.custom_op("qmlir::linear_w8a8_dynamic", mutates_args=())
def linear_w8a8_dynamic(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, group_size: int,
                        outlier_idx: Optional[torch.Tensor], outlier_weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Dynamic W8A8: x quantized per row at run time; i8 x i8 -> i32."""
    xr = regular_columns(x, outlier_idx)
    xq, s = quantize_per_token(_pad(xr, weight.shape[0]))
    y = int_matmul_reference(xq, s, 0, weight, scales, group_size)
    yo = outlier_part(x, outlier_idx, outlier_weight)
    return y if yo is None else y + yo

@torch.library.custom_op("qmlir::linear_w8a8_block", mutates_args=())
def linear_w8a8_block(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int,
                      block: int, outlier_idx: Optional[torch.Tensor],
                      outlier_weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Block-dynamic W8A8 / W4A8: x quantized per block of `block` columns of each row at run time
    (llama.cpp's Q8_0 x Q8_0 arithmetic, or Q4_0 x Q8_0 with 4-bit weights); one i32 sum and one
    float rescale per block. The weight is in the panel layout (quant_storage.pack_panels, or
    pack_panels_int4 for bits=4); N is the scales' last dimension."""
    xr = regular_columns(x, outlier_idx)
    N = scales.shape[-1]
    wq = unpack_panels(weight, N, bits)
    Kp = wq.shape[0]
    xq, s = quantize_blocks(_pad(xr, Kp), block)
    y = block_matmul_reference(xq, s, wq, block_weight_scales(scales, Kp, N, group_size, block), block)
    yo = outlier_part(x, outlier_idx, outlier_weight)
    return y if yo is None else y + yo

@linear_weight_only.register_fake
def _(x, weight, scales, zero_points, bits, group_size):
    return x.new_empty(x.shape[0], weight.shape[1], dtype=torch.float32)

@linear_w8a8.register_fake
def _(x, weight, scales, act_scale, act_zero_point, group_size, outlier_idx, outlier_weight):
    return x.new_empty(x.shape[0], weight.shape[1], dtype=torch.float32)

@linear_w8a8_dynamic.register_fake
def _(x, weight, scales, group_size, outlier_idx, outlier_weight):
    return x.new_empty(x.shape[0], weight.shape[1], dtype=torch.float32)

@linear_w8a8_block.register_fake
def _(x, weight, scales, bits, group_size, block, outlier_idx, outlier_weight):
    return x.new_empty(x.shape[0], scales.shape[-1], dtype=torch.float32)
