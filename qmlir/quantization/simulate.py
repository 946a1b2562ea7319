"""Quantization simulated in float, with the arithmetic of the real layers (qmlir.ir.quant_ops,
qmlir.ir.quant_storage): what the SmoothQuant/AWQ searches score candidate scales with, and
the static activation parameters quantize() stores.

Everything here follows the config it is given: weights in its storage (bits, granularity,
groups, zero points), activations static per tensor (absmax, minmax or percentile range from
the calibration statistics, with saturation of values outside it) or dynamic per token, and
outlier channels, which bypass activation quantization.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from qmlir.ir.quant_ops import quantize_blocks, quantize_per_token, quantize_static
from qmlir.ir.quant_storage import dequantize_weight, quantize_weight
from qmlir.quantization.config import QuantConfig


OUTLIER_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}


def _f32(v: float) -> float:
    return float(torch.tensor(v, dtype=torch.float32))


def activation_params(cmin: torch.Tensor, cmax: torch.Tensor, cfg: QuantConfig,
                      percentile: Optional[Callable[[float], float]] = None,
                      outliers: Optional[torch.Tensor] = None) -> tuple:
    """(scale, zero point) of a static per-tensor int8 activation from per-channel ranges
    (`cmin`, `cmax` [K]), leaving out the `outliers` channels; `percentile(q)`: the q-th
    percentile of |x| over the regular channels (act_calib=percentile)."""
    cmin, cmax = cmin.clone(), cmax.clone()
    if outliers is not None and outliers.numel():
        cmin[outliers] = 0.0
        cmax[outliers] = 0.0
    lo, hi = min(float(cmin.min()), 0.0), max(float(cmax.max()), 0.0)
    if cfg.act_calib == "percentile":
        p = percentile(cfg.act_percentile)
        lo, hi = max(lo, -p), min(hi, p)
    if cfg.act_symmetric or cfg.act_calib == "absmax":
        a = max(-lo, hi)
        return (_f32(a / 127.0) if a > 0 else 1.0), 0
    if hi - lo <= 0:
        return 1.0, 0
    scale = _f32((hi - lo) / 255.0)
    zp = int(round(-128 - lo / scale))
    return scale, max(-128, min(127, zp))


def fake_weight(w: torch.Tensor, cfg: QuantConfig) -> torch.Tensor:
    """w [N, K] quantized and dequantized as `cfg` stores it."""
    qw = quantize_weight(w, cfg.weight_bits, cfg.weight_granularity, cfg.group_size, cfg.weight_symmetric)
    return dequantize_weight(qw.storage, qw.scales, qw.bits, qw.group_size, qw.zero_points)[:w.shape[1]].t()


def fake_activation(x: torch.Tensor, cfg: QuantConfig, params: Optional[tuple] = None) -> torch.Tensor:
    """x [M, K] through the config's activation quantization: static (`params` = (scale, zp),
    saturating), dynamic per token or per block of columns; unchanged for weight-only configs."""
    if cfg.act_dtype == "none":
        return x
    if cfg.static_activations:
        scale, zp = params
        return (quantize_static(x, scale, zp).to(torch.float32) - zp) * scale
    if cfg.act_granularity == "block":
        M, K = x.shape
        Kp = -(-K // cfg.act_block) * cfg.act_block
        q, scale = quantize_blocks(torch.nn.functional.pad(x, (0, Kp - K)), cfg.act_block)
        return (q.to(torch.float32).reshape(M, -1, cfg.act_block) * scale[:, :, None]).reshape(M, Kp)[:, :K]
    q, scale = quantize_per_token(x)
    return q.to(torch.float32) * scale[:, None]


def group_error(rows: torch.Tensor, weights: List[torch.Tensor], s: Optional[torch.Tensor], cfg: QuantConfig,
                cmin: torch.Tensor, cmax: torch.Tensor, percentile_rows: Optional[torch.Tensor] = None) -> float:
    """Mean squared output error, summed over a group of linears sharing one input, of quantizing
    with smoothing scales `s` (None: no smoothing) as `cfg` says. The static activation range comes
    from the per-channel ranges `cmin`/`cmax` (and the rows `percentile_rows`) of the data the
    scales were fitted on; `rows` [R, K] are other rows, so that a candidate is not scored on
    the data it was fitted to (a range fitted to its own rows never clips them)."""
    x = rows.to(torch.float32)
    if s is not None:
        x = x / s
        cmin, cmax = cmin / s, cmax / s
    outliers = None
    if cfg.outlier_threshold is not None:
        outliers = torch.nonzero(torch.maximum(cmin.abs(), cmax.abs()) > cfg.outlier_threshold).reshape(-1)
    params = None
    if cfg.static_activations:
        pct = None
        if cfg.act_calib == "percentile":
            pr = percentile_rows.to(torch.float32) / (s if s is not None else 1.0)
            if outliers is not None and outliers.numel():
                pr = pr.clone()
                pr[:, outliers] = 0
            pct = lambda q: float(torch.quantile(pr.abs().reshape(-1)[:1 << 24], q / 100.0))  # noqa: E731
        params = activation_params(cmin, cmax, cfg, pct, outliers)
    xq = fake_activation(x, cfg, params)
    odt = OUTLIER_DTYPES[cfg.outlier_dtype]
    if outliers is not None and outliers.numel():  # outlier channels: both sides rounded to their dtype
        xq = xq.clone()
        xq[:, outliers] = x[:, outliers].to(odt).to(torch.float32)
    err = 0.0
    for w in weights:
        w = w.detach().to(torch.float32)
        ws = w if s is None else w * s
        if outliers is not None and outliers.numel():  # their rows stay in `odt`, out of the integer part
            wr = ws.clone()
            wr[:, outliers] = 0.0
            wq = fake_weight(wr, cfg) if cfg.is_integer else wr
            wq[:, outliers] = ws[:, outliers].to(odt).to(torch.float32)
        else:
            wq = fake_weight(ws, cfg) if cfg.is_integer else ws
        err += float(((xq @ wq.t()) - rows.to(torch.float32) @ w.t()).pow(2).mean())
    return err
