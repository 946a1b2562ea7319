"""make bench: qmlir against PyTorch, side by side in one process.

Each case runs eager PyTorch, torch.compile with inductor, and torch.compile with qmlir on the
same inputs; after warm-up, the three are timed round-robin for several rounds and the medians
are compared as ratios (speedup = eager time / backend time; above 1 is faster than eager).
Ratios survive a noisy machine better than absolute times. Results also go to JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")


def timed_round_robin(fns: dict, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def linear_case(m: int, dtype: torch.dtype, k: int = 4096, n: int = 4096):
    lin = torch.nn.Linear(k, n, bias=False).to(dtype).eval()
    x = torch.randn(m, k).to(dtype)
    return f"linear {k}x{n} M={m} {str(dtype).replace('torch.', '')}", lin, (x,), {}


def smollm2_case(tokens: int):
    from qmlir import zoo
    model, tok = zoo.smollm2(torch.float32)
    ids = tok(zoo.gpl3_text(), return_tensors="pt").input_ids[:, :tokens]
    return f"SmolLM2-135M prefill {tokens} tokens f32", model, (ids,), {"use_cache": False}


def run_case(name, model, args, kwargs, rounds, warmup, backends):
    import qmlir  # noqa: F401  (registers nothing new; the entry point names the backend)
    fns, compile_s = {}, {}
    with torch.no_grad():
        fns["eager"] = lambda: model(*args, **kwargs)
        for backend in backends:
            torch._dynamo.reset()
            compiled = torch.compile(model, backend=backend, dynamic=False)
            t0 = time.perf_counter()
            compiled(*args, **kwargs)
            compile_s[backend] = time.perf_counter() - t0
            fns[backend] = (lambda c: (lambda: c(*args, **kwargs)))(compiled)
        medians = timed_round_robin(fns, rounds, warmup)
    row = {"case": name, "median_s": medians, "first_call_s": compile_s,
           "speedup_vs_eager": {b: medians["eager"] / medians[b] for b in backends}}
    cells = "  ".join(f"{b} {medians[b] * 1e3:8.2f} ms ({row['speedup_vs_eager'][b]:5.2f}x)" for b in backends)
    print(f"{name:42} eager {medians['eager'] * 1e3:8.2f} ms  {cells}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-model", action="store_true", help="only the linear layers")
    parser.add_argument("--no-inductor", action="store_true", help="leave out torch.compile(inductor)")
    parser.add_argument("--json", default="benchmarks/results/latest.json")
    args = parser.parse_args()
    backends = (["inductor"] if not args.no_inductor else []) + ["qmlir"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; speedup = eager time / backend time")
    cases = [linear_case(m, torch.float32) for m in (1, 16, 128)] + [linear_case(128, torch.bfloat16)]
    rows = [run_case(*c, args.rounds, args.warmup, backends) for c in cases]
    if not args.skip_model:
        rows.append(run_case(*smollm2_case(128), args.rounds, args.warmup, backends))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.machine(), "rows": rows}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
