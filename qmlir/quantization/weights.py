"""Symmetric weight quantization of a linear layer, and int4 packing.

A linear weight `W [N, K]` (nn.Linear's layout) is stored transposed, `[Kp, N]`, the layout of
the `x @ W` matmul in qmlir's IR contract (qmlir/passes/README.md), so the compiled kernel reads
it without a per-call transpose. Kp pads K with zero rows to a whole number of groups (group
granularity) or to an even count (int4, two values per byte).

Scales: `[1]` per tensor, `[N]` per output channel, `[Kp/G, N]` per group of G input channels.
q = clamp(round_half_even(w / s), qmin, qmax) with s = absmax / qmax (a zero block gets s = 1).
int4 storage packs rows 2i (low nibble) and 2i+1 (high nibble) of the [Kp, N] int4 matrix into
one byte: `[Kp/2, N]` int8.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizedWeight:
    storage: torch.Tensor  # int8 [Kp, N], or packed int4 [Kp/2, N]
    scales: torch.Tensor   # f32 [1], [N] or [Kp/G, N]
    bits: int
    group_size: int        # 0 unless grouped
    in_features: int       # K (before padding)

    @property
    def padded_in_features(self) -> int:
        return self.storage.shape[0] * (2 if self.bits == 4 else 1)


def qrange(bits: int) -> tuple:
    return (-128, 127) if bits == 8 else (-8, 7)


def padded_k(k: int, bits: int, group_size: int) -> int:
    step = group_size if group_size else (2 if bits == 4 else 1)
    return -(-k // step) * step


def quantize_weight(weight: torch.Tensor, bits: int, granularity: str, group_size: int = 128) -> QuantizedWeight:
    """Quantize `weight [N, K]` symmetrically; see the module docstring for the layout."""
    w = weight.detach().to(torch.float32).t().contiguous()  # [K, N]
    K, N = w.shape
    group = group_size if granularity == "group" else 0
    Kp = padded_k(K, bits, group)
    if Kp != K:
        w = torch.cat([w, w.new_zeros(Kp - K, N)])
    qmin, qmax = qrange(bits)
    if granularity == "tensor":
        absmax = w.abs().amax().reshape(1)
    elif granularity == "channel":
        absmax = w.abs().amax(dim=0)
    else:
        absmax = w.reshape(Kp // group, group, N).abs().amax(dim=1)
    scales = torch.where(absmax == 0, torch.ones_like(absmax), absmax / qmax).to(torch.float32)
    expanded = scales.repeat_interleave(group, dim=0) if group else scales.reshape(1, -1)
    q = torch.clamp(torch.round(w / expanded), qmin, qmax).to(torch.int8)
    storage = pack_int4(q) if bits == 4 else q
    return QuantizedWeight(storage, scales, bits, group, K)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """[Kp, N] int8 in [-8, 7] -> [Kp/2, N] int8 bytes: row 2i in the low nibble, 2i+1 in the high."""
    lo = q[0::2].to(torch.int16) & 0xF
    hi = q[1::2].to(torch.int16) & 0xF
    byte = lo | (hi << 4)
    return torch.where(byte > 127, byte - 256, byte).to(torch.int8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`: sign-extended nibbles, [Kp, N] int8."""
    b = packed.to(torch.int16)
    lo = ((b & 0xF) ^ 8) - 8
    hi = (((b >> 4) & 0xF) ^ 8) - 8
    return torch.stack([lo, hi], dim=1).reshape(-1, packed.shape[1]).to(torch.int8)


def integer_weight(qw_storage: torch.Tensor, bits: int) -> torch.Tensor:
    """The [Kp, N] int8 integer values behind a storage tensor."""
    return unpack_int4(qw_storage) if bits == 4 else qw_storage


def expand_scales(scales: torch.Tensor, Kp: int, group_size: int) -> torch.Tensor:
    """Scales broadcast to the [Kp, N] weight (per tensor [1, 1], per channel [1, N])."""
    if group_size:
        return scales.repeat_interleave(group_size, dim=0)
    return scales.reshape(1, -1)


def dequantize_weight(storage: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """[Kp, N] f32 = q * s (one f32 rounding, as the compiled dequantization)."""
    q = integer_weight(storage, bits)
    return q.to(torch.float32) * expand_scales(scales, q.shape[0], group_size)
