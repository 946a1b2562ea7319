"""Sequential GPTQ: quantize a decoder stack block by block, each block's Hessians taken from
the outputs of the blocks before it *as quantized* (the reference GPTQ's order), instead of from
the float model: a layer then compensates the error its inputs already carry.

The blocks are the `nn.ModuleList` holding the most layers to quantize (a transformer's
`model.layers`). The calibration batches run once up to the first block, whose inputs (and
keyword arguments: masks, position embeddings) are kept; then for each block: observe its
linears' inputs on the kept inputs, quantize them (`quantize_layer`), put their dequantized
weights in place, and run the block again to get the next block's inputs. Linears outside the
blocks are left to the caller. Models without such a list return None (the caller calibrates
all layers on the float model).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from qmlir.quantization.calibration import ActivationObserver, call_model


class _Stop(Exception):
    pass


def find_blocks(model: torch.nn.Module, names: List[str]) -> Optional[Tuple[str, torch.nn.ModuleList]]:
    """(prefix, ModuleList) of the blocks holding the most of `names`, at least 2 blocks."""
    best = None
    for prefix, mod in model.named_modules():
        if not isinstance(mod, torch.nn.ModuleList) or len(mod) < 2:
            continue
        held = sum(1 for n in names if n.startswith(prefix + "."))
        if held and (best is None or held > best[0]):
            best = (held, prefix, mod)
    return None if best is None else (best[1], best[2])


def quantize_blocks(model: torch.nn.Module, calib: list, linears: Dict[str, torch.nn.Module],
                    quantize_layer: Callable[[str, ActivationObserver], torch.nn.Module],
                    dequantized: Callable[[torch.nn.Module], torch.Tensor], sink_weight: float,
                    progress: bool) -> Optional[Dict[str, torch.nn.Module]]:
    """{name: quantized layer} for the linears inside the blocks, or None without blocks.
    `quantize_layer(name, observer)` builds a layer from an observer with x^T x;
    `dequantized(layer)` gives its weight [N, K] in float, put in place for the later blocks."""
    from tqdm.auto import tqdm

    found = find_blocks(model, list(linears))
    if found is None:
        return None
    prefix, blocks = found
    kept: List[tuple] = []

    def grab(module, args, kwargs):
        kept.append((args, kwargs))
        raise _Stop

    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    handle = blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        if use_cache is not None:
            config.use_cache = False  # no KV cache object is carried from block to block
        with torch.no_grad():
            for item in calib:
                try:
                    call_model(model, item)
                except _Stop:
                    pass
    finally:
        handle.remove()
        if use_cache is not None:
            config.use_cache = use_cache
    if len(kept) != len(calib) or any(not a and "hidden_states" not in k for a, k in kept):
        return None  # a batch never reached the first block, or its input is not recognizable
    out: Dict[str, torch.nn.Module] = {}
    for i, block in enumerate(tqdm(blocks, desc="qmlir GPTQ", unit="block", disable=not progress)):
        names = [n for n in linears if n.startswith(f"{prefix}.{i}.")]
        observers = {n: ActivationObserver(n, hessian=True, sink_weight=sink_weight) for n in names}
        shared: dict = {}
        handles = [linears[n].register_forward_pre_hook(lambda m, a, _n=n: observers[_n].observe(a[0], shared))
                   for n in names]
        try:
            with torch.no_grad():
                for args, kwargs in kept:
                    block(*args, **kwargs)
        finally:
            shared.clear()
            for h in handles:
                h.remove()
        for n in names:
            layer = quantize_layer(n, observers[n])
            observers[n].xtx = None
            out[n] = layer
            lin = linears[n]
            lin.weight.data = dequantized(layer).to(lin.weight.dtype)
        with torch.no_grad():
            nxt = []
            for args, kwargs in kept:
                y = block(*args, **kwargs)
                y = y[0] if isinstance(y, (tuple, list)) else y
                if args:
                    nxt.append(((y,) + tuple(args[1:]), kwargs))
                else:  # the hidden states passed by keyword
                    nxt.append((args, {**kwargs, "hidden_states": y}))
            kept = nxt
    return out
