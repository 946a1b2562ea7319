"""The model-level half of the SmoothQuant/AWQ "auto" searches.

The per-group search (smoothquant.choose_scales) minimizes each layer's own output error; on a
real model that is a weak proxy (on SmolLM2 per-group AWQ was worse than no AWQ, and per-group
SmoothQuant with outlier channels worse than a fixed alpha of 0.5). So "auto" also quantizes the
model once per candidate (no smoothing, every grid alpha for all layers, and the per-group
choice) on most of the calibration batches (at most 24, spread over them; up to 8 held out)
and keeps the candidate whose outputs on the held-out
batches are closest to the float model's: by construction never worse, on data it was not
fitted on, than any fixed alpha of the grid or than no smoothing. "Closest" is the KL divergence
of the output distribution for models that return `logits`, else the relative squared error of
the first output tensor. GPTQ candidates are scored with round-to-nearest weights (GPTQ per
candidate would cost minutes each); the chosen smoothing is then applied with GPTQ.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from qmlir.quantization.calibration import call_model
from qmlir.quantization.config import QuantConfig

HELD_OUT_EVERY = 4
MAX_FIT, MAX_HELD = 24, 8  # batches the model-level search uses at most (spread over the data)


@dataclass
class AlphaChoice:
    """What the model-level search chose: `alpha` for every group (None: no smoothing), or the
    per-group alphas (`per_group`, keyed by a group's first linear) when that scored best."""

    alpha: Optional[float] = None
    per_group: Optional[Dict[str, Optional[float]]] = None
    scores: Dict[str, float] = field(default_factory=dict)  # candidate -> held-out divergence

    def describe(self) -> str:
        which = "per-layer" if self.per_group is not None else ("none" if self.alpha is None else f"{self.alpha:g}")
        ranked = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.scores.items(), key=lambda kv: kv[1])[:4])
        return f"auto chose {which} (held-out divergence: {ranked})"


def split(calib: list) -> tuple:
    """(fitting batches, held-out batches): every 4th batch held out (the last of 2 or 3)."""
    if len(calib) >= HELD_OUT_EVERY:
        return ([b for i, b in enumerate(calib) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1],
                [b for i, b in enumerate(calib) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1])
    return calib[:-1], calib[-1:]


def _spread(batches: list, n: int) -> list:
    """At most `n` of `batches`, at even strides."""
    if len(batches) <= n:
        return batches
    return [batches[i * len(batches) // n] for i in range(n)]


def _output(out) -> tuple:
    """(tensor, is_logits) of a model's output."""
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits, True
    if isinstance(out, torch.Tensor):
        return out, False
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else [out]
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v, False
    raise TypeError(f"the model's output ({type(out).__name__}) holds no float tensor to compare")


def divergence(model: torch.nn.Module, held: list, refs: List[tuple]) -> float:
    total = 0.0
    with torch.no_grad():
        for item, (ref, is_logits) in zip(held, refs):
            out, _ = _output(call_model(model, item))
            out = out.to(torch.float32)
            if is_logits:
                lp_ref = torch.log_softmax(ref, dim=-1)
                total += float((lp_ref.exp() * (lp_ref - torch.log_softmax(out, dim=-1))).sum(-1).mean())
            else:
                total += float((out - ref).pow(2).sum() / ref.pow(2).sum().clamp(min=1e-30))
    return total / len(held)


def choose_alpha(model: torch.nn.Module, calib: list, cfg: QuantConfig,
                 quantize: Callable[..., torch.nn.Module], progress: bool) -> AlphaChoice:
    """Score the candidates of an "auto" config (see the module docstring). `quantize(model,
    calib, cfg, group_search)` is qmlir.quantize without this search (group_search: run the
    per-group search, for the per-layer candidate)."""
    from tqdm.auto import tqdm

    key = "smoothquant_alpha" if cfg.smoothquant_alpha is not None else "awq_alpha"
    fit, held = split(calib)
    fit, held = _spread(fit, MAX_FIT), _spread(held, MAX_HELD)
    with torch.no_grad():
        refs = []
        for item in held:
            out, is_logits = _output(call_model(model, item))
            refs.append((out.to(torch.float32), is_logits))
    fast = dataclasses.replace(cfg, weight_algorithm="rtn")
    grid = [i / (cfg.smoothquant_grid - 1) for i in range(cfg.smoothquant_grid)]
    if key == "awq_alpha":
        grid = grid[1:]  # AWQ's alpha 0 is no smoothing
    candidates: List[tuple] = [("none", None)] + [(f"{a:g}", a) for a in grid]
    if len(fit) >= 2:
        candidates.append(("per-layer", "auto"))
    choice = AlphaChoice()
    best = None
    for label, a in tqdm(candidates, desc="qmlir auto search", unit="candidate", disable=not progress):
        q = quantize(model, fit, dataclasses.replace(fast, **{key: a}), a == "auto")
        score = divergence(q, held, refs)
        choice.scores[label] = score
        if best is None or score < best[0]:
            best = (score, label, a, q)
    _, label, a, q = best
    if a == "auto":
        choice.per_group = {n: v.get("alpha") for n, v in q.qmlir_quant.layers.items() if "smooth" in v}
    else:
        choice.alpha = a
    return choice
