"""GPTQ (Frantar et al., 2023): quantize a linear layer's weight one input channel at a time,
spreading each channel's rounding error over the channels not yet quantized, weighted by the
inverse Hessian of the layer's reconstruction error, H = X^T X from calibration.

Produces the same storage as `weights.quantize_weight` (groups along K, padding, symmetric or
asymmetric, int4 packed), so everything downstream (eager reference, IR, save/load) is shared;
only the integer values differ from round-to-nearest.
"""
from __future__ import annotations

import torch

from qmlir.quantization.weights import QuantizedWeight, pack_int4, padded_k, qrange


def _params(w: torch.Tensor, qmin: int, qmax: int, symmetric: bool):
    """Scale and zero point per row of w [N, G] (the formulas of weights.quantize_weight)."""
    if symmetric:
        absmax = w.abs().amax(dim=1)
        return torch.where(absmax == 0, torch.ones_like(absmax), absmax / qmax), torch.zeros_like(absmax)
    lo, hi = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)
    span = hi - lo
    scale = torch.where(span == 0, torch.ones_like(span), span / (qmax - qmin))
    return scale, torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, bits: int, granularity: str, group_size: int,
                  symmetric: bool = True, damp: float = 0.01, block: int = 128) -> QuantizedWeight:
    """weight [N, K], hessian [K, K] (sum of x^T x over calibration rows)."""
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
    H += damp * torch.mean(torch.diag(H)) * torch.eye(Kp, dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    if granularity == "tensor":
        s, z = _params(W.reshape(1, -1), qmin, qmax, symmetric)
        scale_t, zp_t = s.expand(N).clone(), z.expand(N).clone()
    elif granularity == "channel":
        scale_t, zp_t = _params(W, qmin, qmax, symmetric)
    n_groups = Kp // group if group else 1
    scales = torch.zeros(n_groups, N, dtype=torch.float64)
    zps = torch.zeros(n_groups, N, dtype=torch.float64)
    Q = torch.zeros(N, Kp, dtype=torch.float64)
    step = group if group else block
    for i1 in range(0, Kp, step):
        i2 = min(i1 + step, Kp)
        W1 = W[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if group:
            scale_t, zp_t = _params(W1, qmin, qmax, symmetric)
            scales[i1 // group], zps[i1 // group] = scale_t, zp_t
        for i in range(i2 - i1):
            w = W1[:, i]
            q = torch.clamp(torch.round(w / scale_t) + zp_t, qmin, qmax)
            Q[:, i1 + i] = q
            err = (w - (q - zp_t) * scale_t) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    if not group:
        scales[0], zps[0] = scale_t, zp_t
    q = Q.t().contiguous().to(torch.int8)  # [Kp, N]
    storage = pack_int4(q) if bits == 4 else q
    sc = scales.to(torch.float32)
    zp = None if symmetric else zps.to(torch.int32)
    if not group:
        sc = sc[0, :1] if granularity == "tensor" else sc[0]
        zp = None if zp is None else (zp[0, :1] if granularity == "tensor" else zp[0])
    return QuantizedWeight(storage, sc, bits, group, K, zp)
