"""Symmetric weight quantization of a linear layer, and int4 packing.

A linear weight `W [N, K]` (nn.Linear's layout) is stored transposed, `[Kp, N]`, the layout of
the `x @ W` matmul in qmlir's IR contract (qmlir/passes/README.md), so the compiled kernel reads
it without a per-call transpose. Kp pads K with zero rows to a whole number of groups (group
granularity) or to an even count (int4, two values per byte).

Scales: `[1]` per tensor, `[N]` per output channel, `[Kp/G, N]` per group of G input channels.
Symmetric: q = clamp(round_half_even(w / s), qmin, qmax) with s = absmax / qmax (a zero block
gets s = 1). Asymmetric (weight-only): s = (max - min) / (2^bits - 1) over the block's range
(which includes 0), zero point zp = round(qmin - min / s), q = clamp(round(w / s) + zp, qmin,
qmax); int4 then uses the range [0, 15] (unsigned nibbles), since LLVM 22's parser aborts on a
negative zero point in a sub-channel quant type.
int4 storage packs rows 2i (low nibble) and 2i+1 (high nibble) of the [Kp, N] int4 matrix into
one byte: `[Kp/2, N]` int8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class QuantizedWeight:
    storage: torch.Tensor  # int8 [Kp, N], or packed int4 [Kp/2, N]
    scales: torch.Tensor   # f32 [1], [N] or [Kp/G, N]
    bits: int
    group_size: int        # 0 unless grouped
    in_features: int       # K (before padding)
    zero_points: Optional[torch.Tensor] = None  # int32, the shape of scales (asymmetric only)

    @property
    def padded_in_features(self) -> int:
        return self.storage.shape[0] * (2 if self.bits == 4 else 1)


def qrange(bits: int, symmetric: bool = True) -> tuple:
    """The storage range of weights: int8 [-128, 127]; int4 [-8, 7], or [0, 15] if asymmetric."""
    if bits == 8:
        return -128, 127
    return (-8, 7) if symmetric else (0, 15)


def padded_k(k: int, bits: int, group_size: int) -> int:
    step = group_size if group_size else (2 if bits == 4 else 1)
    return -(-k // step) * step


def quantize_weight(weight: torch.Tensor, bits: int, granularity: str, group_size: int = 128,
                    symmetric: bool = True) -> QuantizedWeight:
    """Quantize `weight [N, K]`; see the module docstring for the layout and the formulas."""
    w = weight.detach().to(torch.float32).t().contiguous()  # [K, N]
    K, N = w.shape
    group = group_size if granularity == "group" else 0
    Kp = padded_k(K, bits, group)
    if Kp != K:
        w = torch.cat([w, w.new_zeros(Kp - K, N)])
    qmin, qmax = qrange(bits, symmetric)

    def reduce(fn):
        if granularity == "tensor":
            return fn(w.reshape(-1, 1), 0).reshape(1)
        if granularity == "channel":
            return fn(w, 0)
        return fn(w.reshape(Kp // group, group, N), 1)

    def expand(t):
        return t.repeat_interleave(group, dim=0) if group else t.reshape(1, -1)

    if symmetric:
        absmax = reduce(lambda t, d: t.abs().amax(dim=d))
        scales = torch.where(absmax == 0, torch.ones_like(absmax), absmax / qmax).to(torch.float32)
        q = torch.clamp(torch.round(w / expand(scales)), qmin, qmax).to(torch.int8)
        zps = None
    else:
        lo = reduce(lambda t, d: t.amin(dim=d)).clamp(max=0)
        hi = reduce(lambda t, d: t.amax(dim=d)).clamp(min=0)
        span = hi - lo
        scales = torch.where(span == 0, torch.ones_like(span), span / (qmax - qmin)).to(torch.float32)
        zps = torch.clamp(torch.round(qmin - lo / scales), qmin, qmax).to(torch.int32)
        q = torch.clamp(torch.round(w / expand(scales)) + expand(zps), qmin, qmax).to(torch.int8)
    storage = pack_int4(q) if bits == 4 else q
    return QuantizedWeight(storage, scales, bits, group, K, zps)


PANEL = 64  # columns per panel of the panel layout (block-dynamic W8A8 weights)


def pack_panels(q: torch.Tensor) -> torch.Tensor:
    """[Kp, N] int8 (Kp % 4 == 0) -> the panel layout [ceil(N / 64), Kp / 4, 64, 4]: panels of 64
    columns, each panel's rows in groups of four with the four values of one column adjacent
    (packed[p, kq, c, r] = q[4 kq + r, 64 p + c]; columns past N are zeros). Each panel is
    contiguous, and each 64 bytes of it are the operand layout of `vpdpbusd` for 16 columns."""
    Kp, N = q.shape
    if Kp % 4:
        raise ValueError(f"panel layout: {Kp} rows is not a multiple of 4")
    P = -(-N // PANEL)
    if P * PANEL != N:
        q = torch.cat([q, q.new_zeros(Kp, P * PANEL - N)], dim=1)
    return q.reshape(Kp // 4, 4, P, PANEL).permute(2, 0, 3, 1).contiguous()


def unpack_panels(packed: torch.Tensor, n: int, bits: int = 8) -> torch.Tensor:
    """Inverse of `pack_panels` (bits=8) or `pack_panels_int4` (bits=4): [Kp, n] int8."""
    if bits == 4:
        u = packed.to(torch.int16) & 0xFF
        lo, hi = (u & 0xF) - 8, (u >> 4) - 8  # rows 8 kq + r and 8 kq + 4 + r
        P, Q8, _, _ = packed.shape
        both = torch.stack([lo, hi], dim=2)  # [P, Q8, 2, 64, 4]
        return both.permute(1, 2, 4, 0, 3).reshape(8 * Q8, P * PANEL)[:, :n].to(torch.int8)
    P, Q, _, _ = packed.shape
    return packed.permute(1, 3, 0, 2).reshape(4 * Q, P * PANEL)[:, :n]


def pack_panels_int4(q: torch.Tensor) -> torch.Tensor:
    """[Kp, N] int8 in [-8, 7] (Kp % 8 == 0) -> [ceil(N / 64), Kp / 8, 64, 4] bytes: the panel
    layout of `pack_panels` over rows in eights, byte (kq, c, r) holding q + 8 of row 8 kq + r in
    its low nibble and of row 8 kq + 4 + r in its high nibble (unsigned, 0..15). A 64-byte read
    gives, by its low and by its high nibbles, the unsigned `vpdpbusd` operands of 16 columns for
    rows 8 kq..8 kq + 3 and 8 kq + 4..8 kq + 7."""
    Kp, N = q.shape
    if Kp % 8:
        raise ValueError(f"int4 panel layout: {Kp} rows is not a multiple of 8")
    P = -(-N // PANEL)
    u = q.to(torch.int16) + 8
    if P * PANEL != N:
        u = torch.cat([u, u.new_full((Kp, P * PANEL - N), 8)], dim=1)  # padding columns: q = 0
    u = u.reshape(Kp // 8, 2, 4, P, PANEL).permute(3, 0, 1, 4, 2)  # [P, Q8, half, 64, 4]
    byte = u[:, :, 0] | (u[:, :, 1] << 4)
    return torch.where(byte > 127, byte - 256, byte).to(torch.int8).contiguous()


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """[Kp, N] int8 in [-8, 7] -> [Kp/2, N] int8 bytes: row 2i in the low nibble, 2i+1 in the high."""
    lo = q[0::2].to(torch.int16) & 0xF
    hi = q[1::2].to(torch.int16) & 0xF
    byte = lo | (hi << 4)
    return torch.where(byte > 127, byte - 256, byte).to(torch.int8)


def unpack_int4(packed: torch.Tensor, signed: bool = True) -> torch.Tensor:
    """Inverse of `pack_int4`: nibbles, sign-extended ([-8, 7]) or not ([0, 15]), [Kp, N] int8."""
    b = packed.to(torch.int16)
    lo, hi = b & 0xF, (b >> 4) & 0xF
    if signed:
        lo, hi = (lo ^ 8) - 8, (hi ^ 8) - 8
    return torch.stack([lo, hi], dim=1).reshape(-1, packed.shape[1]).to(torch.int8)


def integer_weight(qw_storage: torch.Tensor, bits: int, signed: bool = True) -> torch.Tensor:
    """The [Kp, N] int8 integer values behind a storage tensor."""
    return unpack_int4(qw_storage, signed) if bits == 4 else qw_storage


def expand_scales(scales: torch.Tensor, Kp: int, group_size: int) -> torch.Tensor:
    """Scales broadcast to the [Kp, N] weight (per tensor [1, 1], per channel [1, N])."""
    if group_size:
        return scales.repeat_interleave(group_size, dim=0)
    return scales.reshape(1, -1)


def dequantize_weight(storage: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int,
                      zero_points: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[Kp, N] f32 = (q - zp) * s, in f32 in that order, as the compiled dequantization."""
    q = integer_weight(storage, bits, signed=zero_points is None)
    f = q.to(torch.float32)
    if zero_points is not None:
        f = f - expand_scales(zero_points, q.shape[0], group_size).to(torch.float32)
    return f * expand_scales(scales, q.shape[0], group_size)
