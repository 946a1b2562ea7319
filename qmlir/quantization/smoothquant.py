"""SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights.

For input channel j of a linear layer, s_j = max|X_j|^alpha / max|W_j|^(1 - alpha);
X' = X / s and W' = W * s give the same product with an easier-to-quantize X'.

The 1/s goes where it costs nothing when the graph allows (found from the module structure
of Llama-family decoders, which covers SmolLM2, Llama, Mistral, Qwen2):
  * into the RMSNorm/LayerNorm that feeds q/k/v (input_layernorm) or gate/up
    (post_attention_layernorm): its weight (and bias) / s, one s shared by the group;
  * into the rows of up_proj for down_proj (down's input is act(gate) * up, linear in up).
Everywhere else (o_proj, whose input channels share value heads under grouped-query
attention; layers of unknown models) x * (1/s) is an explicit multiply before the layer.

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

from qmlir.quantization import simulate
from qmlir.quantization.calibration import ActivationObserver
from qmlir.quantization.config import QuantConfig


@dataclass
class SmoothGroup:
    """Linears sharing one input, and where their 1/s can be folded."""

    linears: List[str]
    norm: Optional[str] = None       # fold into this norm's weight (and bias)
    producer: Optional[str] = None   # or into this linear's output rows
    alpha: Optional[float] = 0.5     # None: left unsmoothed (an "auto" search's choice)
    scales: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def folded(self) -> bool:
        return self.norm is not None or self.producer is not None


def find_groups(model: torch.nn.Module, names: List[str]) -> List[SmoothGroup]:
    """Group the linears to smooth; those not in a foldable pattern get their own group."""
    modules = dict(model.named_modules())
    chosen = set(names)
    groups: List[SmoothGroup] = []
    taken: set = set()
    for prefix, mod in modules.items():
        dot = prefix + "." if prefix else ""
        norm_in, norm_post = dot + "input_layernorm", dot + "post_attention_layernorm"
        qkv = [dot + f"self_attn.{p}_proj" for p in "qkv"]
        gate_up = [dot + "mlp.gate_proj", dot + "mlp.up_proj"]
        down = dot + "mlp.down_proj"
        if _has_weight(modules.get(norm_in)) and all(n in modules for n in qkv) and set(qkv) & chosen:
            groups.append(SmoothGroup(qkv, norm=norm_in))
            taken.update(qkv)
        if _has_weight(modules.get(norm_post)) and all(n in modules for n in gate_up) and set(gate_up) & chosen:
            groups.append(SmoothGroup(gate_up, norm=norm_post))
            taken.update(gate_up)
        if down in chosen and gate_up[1] in modules and "MLP" in type(modules.get(dot + "mlp")).__name__:
            groups.append(SmoothGroup([down], producer=gate_up[1]))
            taken.add(down)
    groups += [SmoothGroup([n]) for n in names if n not in taken]
    return groups


def _has_weight(m: Optional[torch.nn.Module]) -> bool:
    return m is not None and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 1


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
    obs = observers[group.linears[0]]  # the linears of a group see the same input
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
    if group.norm is not None:
        norm = modules[group.norm]
        norm.weight = torch.nn.Parameter(norm.weight.detach() / s.to(norm.weight.dtype), requires_grad=False)
        if getattr(norm, "bias", None) is not None:
            norm.bias = torch.nn.Parameter(norm.bias.detach() / s.to(norm.bias.dtype), requires_grad=False)
        return None
    if group.producer is not None:
        prod = modules[group.producer]
        prod.weight = torch.nn.Parameter(prod.weight.detach() / s[:, None].to(prod.weight.dtype), requires_grad=False)
        if prod.bias is not None:
            prod.bias = torch.nn.Parameter(prod.bias.detach() / s.to(prod.bias.dtype), requires_grad=False)
        return None
    return (1.0 / s).to(torch.float32)


class SmoothedLinear(torch.nn.Module):
    """A float linear behind an explicit x * (1/s) (used while re-calibrating)."""

    def __init__(self, linear: torch.nn.Linear, smooth_inv: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("smooth_inv", smooth_inv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.smooth_inv)
