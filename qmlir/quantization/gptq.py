"""GPTQ (Frantar et al., 2023): quantize a linear layer's weight one input channel at a time,
spreading each channel's rounding error over the channels not yet quantized, weighted by the
inverse Hessian of the layer's reconstruction error, H = X^T X from calibration.

As in the reference implementation's best settings: channels are visited in decreasing order of
H's diagonal ("act order"), with the scales and zero points of every group fixed beforehand
("static groups", so that act order keeps the storage layout of `weights.quantize_weight`). The
group parameters come from a small clipping search: each candidate range (the group's range
times 0.85, 0.9, 0.95 or 1.0; asymmetric: with the zero point's neighbours) is scored by the
rounding error weighted by diag(H), the mean squared activation of each input channel.

Produces the same storage as `weights.quantize_weight` (groups along K, padding, symmetric or
asymmetric, int4 packed), so everything downstream (eager reference, IR, save/load) is shared;
only the integer values and the scales differ from round-to-nearest.
"""
from __future__ import annotations

import torch

from qmlir.ir.quant_storage import QuantizedWeight, pack_int4, padded_k, qrange

CLIP_GRID = (0.85, 0.9, 0.95, 1.0)


def search_params(blocks: torch.Tensor, importance: torch.Tensor, qmin: int, qmax: int, symmetric: bool,
                  grid=CLIP_GRID) -> tuple:
    """Scale and zero point of each block of `blocks [R, B, G]` (R rows, B blocks of G values):
    the clipped range among `grid` whose rounding error, weighted by `importance [B, G]` (>= 0),
    is least. Scales are rounded to f32 (what is stored); zero points are integers."""
    blocks = blocks.to(torch.float64)
    wt = importance.to(torch.float64)[None]
    if symmetric:
        absmax = blocks.abs().amax(-1, keepdim=True)
    else:
        lo = blocks.amin(-1, keepdim=True).clamp(max=0)
        hi = blocks.amax(-1, keepdim=True).clamp(min=0)
    best_err = best_s = best_z = None
    for f in grid:
        if symmetric:
            s = torch.where(absmax == 0, torch.ones_like(absmax), absmax * f / qmax)
        else:
            span = (hi - lo) * f
            s = torch.where(span == 0, torch.ones_like(span), span / (qmax - qmin))
        s = s.to(torch.float32).to(torch.float64)
        # symmetric: zero point 0; asymmetric: the zero point that puts `lo` on the grid, and its
        # neighbours (a shrunken range may sit better shifted by one step)
        z0 = torch.zeros_like(s) if symmetric else torch.round(qmin - lo / s)
        for dz in ((0,) if symmetric else (-1, 0, 1)):
            z = torch.clamp(z0 + dz, qmin, qmax)
            q = torch.clamp(torch.round(blocks / s) + z, qmin, qmax)
            err = (wt * (blocks - (q - z) * s) ** 2).sum(-1, keepdim=True)
            if best_s is None:
                best_err, best_s, best_z = err, s, z
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_s, best_z = torch.where(better, s, best_s), torch.where(better, z, best_z)
    return best_s[..., 0], best_z[..., 0]


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, bits: int, granularity: str, group_size: int,
                  symmetric: bool = True, damp: float = 0.01, act_order: bool = True,
                  block: int = 128) -> QuantizedWeight:
    """weight [N, K], hessian [K, K] (sum of x^T x over calibration rows); damp: the fraction of
    H's mean diagonal added to its diagonal; act_order: visit channels by decreasing diag(H)."""
    W = weight.detach().to(torch.float64).clone()
    N, K = W.shape
    group = group_size if granularity == "group" else 0
    Kp = padded_k(K, bits, group)
    qmin, qmax = qrange(bits, symmetric)
    H = torch.eye(Kp, dtype=torch.float64)
    H[:K, :K] = hessian.to(torch.float64)
    W = torch.nn.functional.pad(W, (0, Kp - K))
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    importance = torch.diag(H).clone()
    importance[dead] = 0.0
    # Static parameters, [n_groups, N] (one "group" spanning K for channel/tensor granularity).
    if group:
        s, z = search_params(W.reshape(N, Kp // group, group), importance.reshape(Kp // group, group),
                             qmin, qmax, symmetric)
        scales, zps = s.t().contiguous(), z.t().contiguous()
    elif granularity == "channel":
        s, z = search_params(W.reshape(N, 1, Kp), importance.reshape(1, Kp), qmin, qmax, symmetric)
        scales, zps = s.t().contiguous(), z.t().contiguous()
    else:
        s, z = search_params(W.reshape(1, 1, N * Kp), importance.repeat(N).reshape(1, N * Kp),
                             qmin, qmax, symmetric)
        scales, zps = s.expand(1, N).contiguous(), z.expand(1, N).contiguous()
    col_group = torch.arange(Kp) // group if group else torch.zeros(Kp, dtype=torch.int64)
    perm = torch.argsort(importance, descending=True, stable=True) if act_order else torch.arange(Kp)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(Kp, dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros(N, Kp, dtype=torch.float64)
    for i1 in range(0, Kp, block):
        i2 = min(i1 + block, Kp)
        W1 = W[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            g = int(col_group[perm[i1 + i]])
            s, z = scales[g], zps[g]
            w = W1[:, i]
            q = torch.clamp(torch.round(w / s) + z, qmin, qmax)
            Q[:, i1 + i] = q
            err = (w - (q - z) * s) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    Q = Q[:, torch.argsort(perm)]
    q = Q.t().contiguous().to(torch.int8)  # [Kp, N]
    storage = pack_int4(q) if bits == 4 else q
    sc = scales.to(torch.float32)
    zp = None if symmetric else zps.to(torch.int32)
    if not group:
        sc = sc[0, :1] if granularity == "tensor" else sc[0]
        zp = None if zp is None else (zp[0, :1] if granularity == "tensor" else zp[0])
    return QuantizedWeight(storage, sc, bits, group, K, zp)
