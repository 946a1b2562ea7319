"""Per-layer measurements of a quantized model against its float original on the same inputs:
what `qmlir report` plots and `qmlir autoquant` scores layers by.

    compare_layers(model, qmodel, batches, names) -> {name: LayerStats}

Both models run on every batch; forward hooks take each named layer's output in both (so the
output SQNR is the layer's error as the network sees it: its own and everything before it) and
the float model's per-channel input absmax."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import torch

from qmlir.quantization.calibration import call_model


@dataclass
class LayerStats:
    signal: float = 0.0        # sum of the float output's squares
    noise: float = 0.0         # sum of (quantized - float)^2
    input_absmax: Optional[torch.Tensor] = None  # per input channel, float model
    calls: int = 0

    @property
    def output_sqnr_db(self) -> float:
        return ratio_db(self.signal, self.noise)


def ratio_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise); inf when there is no noise."""
    if noise == 0.0:
        return float("inf")
    return 10.0 * math.log10(max(signal, 1e-300) / noise)


def compare_layers(model: torch.nn.Module, qmodel: torch.nn.Module, batches: Iterable,
                   names: List[str]) -> Dict[str, LayerStats]:
    """LayerStats of every module in `names` (present in both models) over `batches`."""
    fmods, qmods = dict(model.named_modules()), dict(qmodel.named_modules())
    missing = [n for n in names if n not in fmods or n not in qmods]
    if missing:
        raise ValueError(f"layers not in both models: {missing[:5]}")
    stats = {n: LayerStats() for n in names}
    outputs: Dict[str, List[torch.Tensor]] = {}

    def float_hook(name):
        def hook(_mod, inputs, out):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0).to(torch.float32)
            s = stats[name]
            s.input_absmax = x if s.input_absmax is None else torch.maximum(s.input_absmax, x)
            outputs.setdefault(name, []).append(out.detach().to(torch.float64))
        return hook

    def quant_hook(name):
        def hook(_mod, _inputs, out):
            ref = outputs[name][stats[name].calls % len(outputs[name])]
            s = stats[name]
            s.signal += float(ref.pow(2).sum())
            s.noise += float((out.detach().to(torch.float64) - ref).pow(2).sum())
            s.calls += 1
        return hook

    handles = []
    try:
        with torch.no_grad():
            for item in batches:
                outputs.clear()
                for s in stats.values():
                    s.calls = 0
                handles = [fmods[n].register_forward_hook(float_hook(n)) for n in names]
                call_model(model, item)
                for h in handles:
                    h.remove()
                handles = [qmods[n].register_forward_hook(quant_hook(n)) for n in names]
                call_model(qmodel, item)
                for h in handles:
                    h.remove()
                handles = []
    finally:
        for h in handles:
            h.remove()
    return stats
