"""SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights.

For input channel j of a linear layer, s_j = max|X_j|^alpha / max|W_j|^(1 - alpha);
X' = X / s and W' = W * s give the same product with an easier-to-quantize X'.

The 1/s goes where it costs nothing when the dataflow allows (`dataflow.linear_consumers`, on
the model traced by torch.export, whatever the module names): into the norm (LayerNorm,
RMSNorm, a hand-written gain such as Gemma's 1 + w) whose output feeds only the group's linears,
one s shared by the group; or into the output rows of the linear producing the input (up_proj
for down_proj through act(gate) * up, fc1 for fc2 through a ReLU). Everywhere else (attention
outputs, inputs that also feed a residual, GELU outputs) x * (1/s) is an explicit multiply
before the layer.

alpha="auto" searches per group among no smoothing and a grid of alphas, by cross-validation
over folds of the calibration batches: each candidate's scales come from the other folds and
its simulated output (the config's own weight and activation quantization, static ranges with
their saturation) is compared with the float output on the held-out fold. (Scored on the rows
its range was fitted to, a candidate never clips them: that in-sample search picked alpha = 1
everywhere and lost 17 dB on a random Llama.)

The same scaling serves weight-only quantization as activation-aware weight quantization
(AWQ, Lin et al., 2024): s_j = mean|X_j|^alpha (normalized), which widens the quantization grid
of the weights that meet large activations; the search scores the simulated weight-only
output the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from qmlir.quantization import dataflow, simulate
from qmlir.quantization.calibration import ActivationObserver
from qmlir.quantization.config import QuantConfig


@dataclass
class SmoothGroup:
    """Linears sharing one input, and where their 1/s can be folded."""

    linears: List[str]
    fold: Optional[dataflow.Fold] = None  # None: an explicit x * (1/s) before each linear
    alpha: Optional[float] = 0.5     # None: left unsmoothed (an "auto" search's choice)
    scales: Optional[torch.Tensor] = field(default=None, repr=False)
    why: str = ""                    # why the scales could not be folded

    @property
    def folded(self) -> bool:
        return self.fold is not None


def find_groups(model: torch.nn.Module, names: List[str], example) -> List[SmoothGroup]:
    """Group the linears `names` by the value they read, traced on `example` (one calibration
    input); linears whose input cannot take a folded 1/s get a group each."""
    return [SmoothGroup(c.linears, c.fold, why=c.why) for c in dataflow.linear_consumers(model, example, names)]


def smoothing_scales(act_absmax: torch.Tensor, weights: List[torch.Tensor], alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha) over the group's weights [N, K]; 1 where undefined."""
    w_absmax = torch.stack([w.detach().abs().amax(dim=0) for w in weights]).amax(dim=0).to(torch.float32)
    a = act_absmax.to(torch.float32)
    s = a.clamp(min=1e-5).pow(alpha) / w_absmax.clamp(min=1e-5).pow(1 - alpha)
    s = torch.where((a == 0) | (w_absmax == 0) | ~torch.isfinite(s), torch.ones_like(s), s)
    return s.clamp(min=1e-5, max=1e5)


def awq_scales(act_absmean: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = mean|X_j|^alpha, normalized so that max(s) * min(s) = 1."""
    s = act_absmean.to(torch.float32).clamp(min=1e-4).pow(alpha)
    return (s / (s.max() * s.min()).sqrt()).clamp(min=1e-4, max=1e4)


def candidates(cfg: QuantConfig, grid: int) -> List[Optional[float]]:
    """The alphas an "auto" search scores: no smoothing (None) first, then the grid over [0, 1].
    (AWQ's alpha 0 is no smoothing already: its scales are all 1.)"""
    alphas = [i / (grid - 1) for i in range(grid)]
    return alphas if cfg.awq_alpha is not None else [None] + alphas


def make_scales(group: SmoothGroup, modules: Dict[str, torch.nn.Module], obs: ActivationObserver,
                alpha: Optional[float], cfg: QuantConfig) -> Optional[torch.Tensor]:
    """The group's scales for `alpha` from the statistics in `obs` (None: no smoothing)."""
    if alpha is None:
        return None
    if cfg.awq_alpha is not None:
        return awq_scales(obs.channel_absmean, alpha)
    return smoothing_scales(obs.channel_absmax, [modules[n].weight for n in group.linears], alpha)


_SEARCH = object()


def choose_scales(group: SmoothGroup, modules: Dict[str, torch.nn.Module],
                  observers: Dict[str, ActivationObserver], cfg: QuantConfig, chosen=_SEARCH) -> None:
    """Set group.alpha and group.scales (from all the calibration statistics).

    A fixed alpha (cfg.smoothquant_alpha or cfg.awq_alpha) is used as given. "auto" needs
    observers that kept folds (`calibrate(..., folds=F)`): for each fold, every candidate of
    `candidates()` gets scales from the statistics of the other folds and is scored by its
    simulated output error (`simulate.group_error`: the config's own weight and activation
    quantization) on the fold's rows; the least total error wins, no smoothing on a tie.
    `chosen`: the alpha an earlier search chose for this group (None: no smoothing)."""
    alpha = cfg.smoothquant_alpha if cfg.smoothquant_alpha is not None else cfg.awq_alpha
    # the linears of a group see the same input (a skipped one among them has no observer)
    obs = observers[next(n for n in group.linears if n in observers)]
    if alpha == "auto" and chosen is not _SEARCH:  # chosen already (None: no smoothing)
        group.alpha = chosen
        group.scales = make_scales(group, modules, obs, chosen, cfg)
        return
    if alpha != "auto":
        group.alpha = float(alpha)
        group.scales = make_scales(group, modules, obs, group.alpha, cfg)
        return
    if len(obs.folds) < 2:
        raise ValueError("an auto search needs observers with at least 2 folds")
    weights = [modules[n].weight for n in group.linears]
    alphas = candidates(cfg, cfg.smoothquant_grid)
    errors = [0.0] * len(alphas)
    for f in range(len(obs.folds)):
        fit, rows = obs.fold_split(f)
        for i, a in enumerate(alphas):
            s = make_scales(group, modules, fit, a, cfg)
            errors[i] += rows.shape[0] * simulate.group_error(rows, weights, s, cfg, fit.channel_min,
                                                              fit.channel_max, fit.rows())
    group.alpha = alphas[min(range(len(alphas)), key=lambda i: (errors[i], i))]
    group.scales = make_scales(group, modules, obs, group.alpha, cfg)


def apply(group: SmoothGroup, modules: Dict[str, torch.nn.Module]) -> Optional[torch.Tensor]:
    """Scale the group's weights by s and fold 1/s upstream; returns 1/s if it must stay explicit."""
    s = group.scales
    if s is None:  # the search chose no smoothing
        return None
    for name in group.linears:
        lin = modules[name]
        lin.weight = torch.nn.Parameter((lin.weight.detach() * s.to(lin.weight.dtype)), requires_grad=False)
    fold = group.fold
    if fold is None:
        return (1.0 / s).to(torch.float32)
    if fold.kind == "norm":  # weight' = (weight + offset) / s - offset, bias' = bias / s
        for pname, offset in ((fold.weight, fold.offset), (fold.bias, 0.0)):
            if pname is None:
                continue
            owner, attr = modules[pname.rpartition(".")[0]], pname.rpartition(".")[2]
            p = getattr(owner, attr).detach()
            new = (p.to(torch.float32) + offset) / s.to(torch.float32) - offset
            setattr(owner, attr, torch.nn.Parameter(new.to(p.dtype), requires_grad=False))
        return None
    prod = modules[fold.module]  # "rows": the producing linear's output rows
    prod.weight = torch.nn.Parameter(prod.weight.detach() / s[:, None].to(prod.weight.dtype), requires_grad=False)
    if prod.bias is not None:
        prod.bias = torch.nn.Parameter(prod.bias.detach() / s.to(prod.bias.dtype), requires_grad=False)
    return None


class SmoothedLinear(torch.nn.Module):
    """A float linear behind an explicit x * (1/s) (used while re-calibrating)."""

    def __init__(self, linear: torch.nn.Linear, smooth_inv: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("smooth_inv", smooth_inv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.smooth_inv)
