"""`qmlir autoquant MODEL --budget 1% -o CONFIG.yaml`: a per-layer scheme, as fast as the measured
layer times allow, within an accuracy budget.

1. Every linear (lm_head included) is quantized with each candidate scheme (bf16, int8 weight-only,
   int4 g128 weight-only, W8A8 dynamic; float32 is the always-feasible fallback). Each layer's own
   error is its output noise (10^(-SQNR/10)) on the float model's inputs to it (calibration text,
   fitting split), weighted by its kind's effect on perplexity: every layer of a kind
   (`model.layers.*.mlp.down_proj`, `lm_head` ...) in the noisiest scheme, the rest float, scored
   on the held-out split (every 4th window).
2. Each (scheme, layer shape) is compiled for the CPU target and timed at the model's shape
   (--tokens rows; 1 = a decode step): one graph sums the layer over copies of it holding more
   weight bytes than the last level cache, so each weight streams from memory as in a whole
   decode and the Python around a call is spread over the copies. The times are kept in a JSON
   cache keyed by the target, the scheme, the shape and qmlir's code (reused by the next run).
3. For a trade-off lambda, each layer takes the scheme minimizing time + lambda * weighted noise.
   A larger lambda is more accurate; a binary search over lambda finds the fastest assignment
   whose held-out perplexity is within the budget of the float model's.

torchao's autoquant chooses by speed alone; this one honours the budget. The result is a
QuantConfig with per-layer schemes (`layers`), for `qmlir quantize --config`.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import math
import re
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

from qmlir.cli import common
from qmlir.tools.diagnostics import write_atomically

SCHEMES = {  # name -> QuantConfig keys (LAYER_KEYS); "f32" keeps the layer in float
    "bf16": {"weight_dtype": "bf16"},
    "int8-weight-only": {"weight_dtype": "int8", "weight_granularity": "channel"},
    "int4-g128": {"weight_dtype": "int4", "weight_granularity": "group", "group_size": 128},
    "w8a8-dynamic": {"weight_dtype": "int8", "weight_granularity": "channel", "act_dtype": "int8",
                     "act_granularity": "token"},
    # llama.cpp's Q8_0 (preset w8a8-block32): the fastest decode and within 1% of float on SmolLM2
    "w8a8-block32": {"weight_dtype": "int8", "weight_granularity": "group", "group_size": 32, "act_dtype": "int8",
                     "act_granularity": "block", "act_block": 32},
}
FLOAT = "f32"
LAMBDAS = 33  # trade-off points searched (log-spaced)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "autoquant", help="choose a scheme per layer: fastest within an accuracy budget",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: qmlir autoquant smollm2 --budget 1% -o smollm2-auto.yaml && "
               "qmlir quantize smollm2 --config smollm2-auto.yaml -o smollm2-auto.safetensors")
    common.model_arg(p)
    p.add_argument("--budget", required=True, metavar="PCT",
                   help="allowed perplexity increase over float32 on held-out text: '1%%' or 0.01")
    p.add_argument("-o", "--output", required=True, metavar="CONFIG.yaml", help="the config to write")
    p.add_argument("--force", action="store_true", help="replace CONFIG.yaml if it exists")
    p.add_argument("--schemes", default=",".join(SCHEMES), metavar="LIST",
                   help=f"candidate schemes, comma-separated (default: {','.join(SCHEMES)}; float32 is "
                        "always the fallback)")
    p.add_argument("--tokens", type=int, default=1, metavar="M",
                   help="rows each layer is timed at (default 1: a decode step)")
    p.add_argument("--rotate-mb", type=float, default=64.0, metavar="MB",
                   help="each layer is timed over copies of it holding at least MB of weights (default 64: "
                        "twice a 32 MB L3), as a decode streams them")
    p.add_argument("--cache", metavar="FILE.json", help="the timing cache (default: qmlir's cache directory; "
                                                         "'off' to measure afresh)")
    common.calibration_args(p)
    p.set_defaults(run=run, calib_samples=16)


def parse_budget(text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise common.CliError(f"--budget {text!r}: expected a percentage ('1%') or a fraction (0.01)") from None
    if not math.isfinite(value) or value < 0:
        raise common.CliError(f"--budget {text!r}: expected a non-negative amount")
    return value


def _cache_path(option):
    if option == "off":
        return None
    if option:
        return Path(option)
    from qmlir.target.disk_cache import cache_dir
    d = cache_dir()
    return None if d is None else d / "autoquant-timings.json"


def _code_key(target) -> str:
    """The code a layer's time depends on: the target's lowering (its compile-cache fingerprint)
    and the import of the quantized layers, with everything they import."""
    from qmlir.target.compile import code_fingerprint, fingerprint_modules
    roots = fingerprint_modules(target) | {"qmlir.frontend.importer", "qmlir.quantization.linear"}
    return code_fingerprint(frozenset(roots))[:16]


class Timings:
    """Measured seconds per (target, scheme, shape, rows), read from and written to a JSON file."""

    def __init__(self, path):
        self.path = path
        self.data: Dict[str, float] = {}
        if path is not None and path.is_file():
            try:
                self.data = {k: float(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, TypeError, AttributeError):
                common.say(f"timing cache {path} is not what autoquant writes: measuring afresh")
                self.data = {}

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(self.data, indent=1, sort_keys=True))


class _Rotation(torch.nn.Module):
    """sum_i layers[i](x) over copies of one layer: one call streams every copy's weight once."""

    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        y = self.layers[0](x)
        for layer in self.layers[1:]:
            y = y + layer(x)
        return y


def layer_bytes(layer: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(layer.parameters()) + list(layer.buffers()))


def time_layer(layer: torch.nn.Module, rows: int, rotate_bytes: int, repeats: int = 9) -> float:
    """Seconds per call of `layer` compiled by qmlir on [rows, in] inputs, its weight streamed
    from memory as in a decode: one compiled graph sums the layer over enough copies (separate
    weights, at most 64) to exceed `rotate_bytes`, so neither the last level cache nor the
    Python around a call counts; the median of `repeats` calls over the number of copies."""
    import copy
    import qmlir
    copies = max(1, min(64, -(-rotate_bytes // max(1, layer_bytes(layer)))))
    model = _Rotation([copy.deepcopy(layer) for _ in range(copies)]).eval()  # deepcopy keeps `freeze` marks
    x = torch.randn(rows, layer.in_features)
    with torch.no_grad():
        compiled = qmlir.compile(model, (x,))
        compiled(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            compiled(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / copies


def kind_of(name: str) -> str:
    """'model.layers.3.self_attn.q_proj' -> 'model.layers.*.self_attn.q_proj'."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)", "*", name)


def kind_weights(model, names, noise, schemes, fit, held, ppl_f) -> Dict[str, float]:
    """Per layer: the held-out log-perplexity increase per unit of its output noise, measured
    once per kind of layer (every layer of the kind in the noisiest scheme, the rest float)."""
    import qmlir
    from qmlir.evaluation import perplexity
    from tqdm.auto import tqdm
    worst = max(schemes, key=lambda s: sum(noise[n][s] for n in names))
    kinds: Dict[str, List[str]] = {}
    for n in names:
        kinds.setdefault(kind_of(n), []).append(n)
    out = {}
    for kind, members in tqdm(sorted(kinds.items()), desc="layer kinds", unit="kind", leave=False):
        total = sum(noise[n][worst] for n in members)
        if total == 0.0:
            out.update({n: 1.0 for n in members})
            continue
        cfg = qmlir.QuantConfig(**SCHEMES[worst], skip=[n for n in names if n not in members])
        qm = qmlir.quantize(model, fit, cfg, progress=False)
        rise = max(math.log(perplexity(lambda x: qm(x, use_cache=False).logits, held) / ppl_f), 1e-6)
        out.update({n: rise / total for n in members})
    return out


def choose(names: List[str], t: Dict[str, Dict[str, float]], noise: Dict[str, Dict[str, float]],
           lam: float) -> Dict[str, str]:
    """Each layer's scheme minimizing time + lam * noise (ties: the faster)."""
    return {n: min(t[n], key=lambda s: (t[n][s] + lam * noise[n][s], t[n][s])) for n in names}


def config_of(choice: Dict[str, str], base: str):
    """A QuantConfig: the most common scheme model-wide, the others per layer, float layers skipped."""
    from qmlir.quantization import QuantConfig
    keys = SCHEMES[base]
    defaults = {k: QuantConfig.__dataclass_fields__[k].default for k in keys}
    skip = sorted(n for n, s in choice.items() if s == FLOAT)
    # a layer's keys are merged over the base: the base's keys it does not set are reset
    layers = {n: {**defaults, **SCHEMES[s]} for n, s in sorted(choice.items()) if s not in (base, FLOAT)}
    return QuantConfig(**keys, skip=skip, layers=layers)


def run(args) -> int:
    import qmlir
    from qmlir.quantization.quantize import sqnr_db
    from qmlir.quantization.search import split
    budget = parse_budget(args.budget)
    out = common.check_output_file(args.output, args.force)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        raise common.CliError(f"--schemes: unknown {', '.join(bad) or '(none given)'} (known: {', '.join(SCHEMES)})")
    if args.tokens < 1:
        raise common.CliError(f"--tokens {args.tokens}: expected at least 1")
    if not (args.rotate_mb > 0 and math.isfinite(args.rotate_mb)):
        raise common.CliError(f"--rotate-mb {args.rotate_mb}: expected a positive number")
    if args.calib_samples < 4:
        raise common.CliError("--calib-samples: autoquant needs at least 4 windows (every 4th is held out)")
    loaded = common.load_model(args.model)
    model = loaded.model
    calib = common.calibration(loaded.tokenizer, args.calib, args.calib_corpus, args.calib_samples,
                               args.calib_tokens)
    fit, held = split(calib)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not names:
        raise common.CliError("the model has no nn.Linear layer")
    common.say(f"qmlir autoquant: {loaded.description}; {len(names)} linear layers, schemes "
               f"{', '.join(schemes)}; budget {100 * budget:g}% over float32 on {len(held)} held-out windows")

    # 1. each layer's own error under each scheme, on the float model's inputs to it
    inputs: Dict[str, List[torch.Tensor]] = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: inputs.setdefault(n, []).append(i[0].detach().reshape(-1, i[0].shape[-1])))
        for n in names]
    try:
        with torch.no_grad():
            for ids in fit[:2]:
                model(ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    noise: Dict[str, Dict[str, float]] = {n: {FLOAT: 0.0} for n in names}
    quantized = {}
    from tqdm.auto import tqdm
    for s in tqdm(schemes, desc="layer errors", unit="scheme", leave=False):
        q = qmlir.quantize(model, None, qmlir.QuantConfig(**SCHEMES[s], skip=[]), progress=False)
        quantized[s] = q
        qmods = dict(q.named_modules())
        with torch.no_grad():
            for n in names:
                x = torch.cat(inputs[n])
                db = sqnr_db(modules[n](x), qmods[n](x))
                noise[n][s] = 0.0 if not math.isfinite(db) else 10.0 ** (-db / 10.0)

    # ... weighted by how much each kind of layer (q_proj of every block, lm_head ...) moves the
    # held-out perplexity: the kind alone in the noisiest scheme, the rest float
    from qmlir.evaluation import perplexity
    ppl_f = perplexity(lambda x: model(x, use_cache=False).logits, held)
    weights = kind_weights(model, names, noise, schemes, fit, held, ppl_f)

    # 2. time per (scheme, shape), cached
    from qmlir.target import Target
    target = Target.cpu()
    code = _code_key(target)
    timings = Timings(_cache_path(args.cache))
    shape_of = {n: (modules[n].in_features, modules[n].out_features) for n in names}
    t: Dict[str, Dict[str, float]] = {n: {} for n in names}
    rotate = int(args.rotate_mb * 1e6)
    todo = sorted({(s, shape_of[n]) for n in names for s in [FLOAT] + schemes})
    measured = 0
    for s, (k, nout) in tqdm(todo, desc="layer times", unit="layer", leave=False):
        key = f"{target.text()}|{code}|{s}|{k}x{nout}|M={args.tokens}|rotate={rotate}"
        if key not in timings.data:
            n = next(n for n in names if shape_of[n] == (k, nout))
            layer = modules[n] if s == FLOAT else dict(quantized[s].named_modules())[n]
            timings.data[key] = time_layer(layer, args.tokens, rotate)
            measured += 1
        for n in names:
            if shape_of[n] == (k, nout):
                t[n][s] = timings.data[key]
    timings.save()
    common.say(f"layer times: {measured} measured, {len(todo) - measured} from the cache"
               + (f" ({timings.path})" if timings.path else ""))

    # 3. the fastest assignment within the budget (binary search over lambda)
    noise = {n: {s: v * weights[n] for s, v in noise[n].items()} for n in names}
    limit = ppl_f * (1.0 + budget)
    noises = [v for n in names for v in noise[n].values() if v > 0]
    times = [v for n in names for v in t[n].values()]
    lo_l = math.log10(min(times) / max(max(noises), 1e-12)) - 2
    hi_l = math.log10(sum(times) / max(min(noises), 1e-30)) + 2
    lambdas = [10 ** (lo_l + (hi_l - lo_l) * i / (LAMBDAS - 1)) for i in range(LAMBDAS)]
    tried: Dict[int, tuple] = {}

    def evaluate(i: int) -> tuple:
        if i not in tried:
            choice = choose(names, t, noise, lambdas[i])
            counts = Counter(choice.values())
            base = max((s for s in counts if s != FLOAT), key=lambda s: counts[s], default=schemes[0])
            cfg = config_of(choice, base)
            if all(s == FLOAT for s in choice.values()):
                ppl = ppl_f
            else:
                qm = qmlir.quantize(model, fit, cfg, progress=False)
                ppl = perplexity(lambda x: qm(x, use_cache=False).logits, held)
            total = sum(t[n][choice[n]] for n in names)
            tried[i] = (ppl, total, cfg, counts)
            common.say(f"  lambda {lambdas[i]:.3g}: perplexity {ppl:.4f} ({100 * (ppl / ppl_f - 1):+.2f}%), "
                       f"layer time {total * 1e3:.2f} ms, {', '.join(f'{c} {s}' for s, c in sorted(counts.items()))}")
        return tried[i]

    lo, hi = 0, LAMBDAS - 1  # hi: all layers at their most accurate (float at the top) -> within
    if evaluate(lo)[0] <= limit:
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if evaluate(mid)[0] <= limit:
            hi = mid
        else:
            lo = mid
    ppl, total, cfg, counts = evaluate(hi)
    write_atomically(out, cfg.to_yaml())
    float_time = sum(t[n][FLOAT] for n in names)
    print(f"wrote {out}: {', '.join(f'{c} layers {s}' for s, c in sorted(counts.items()))}; held-out perplexity "
          f"{ppl:.4f} against float32 {ppl_f:.4f} ({100 * (ppl / ppl_f - 1):+.2f}%, budget {100 * budget:g}%); "
          f"measured layer time {total * 1e3:.2f} ms against {float_time * 1e3:.2f} ms in float32")
    return 0
