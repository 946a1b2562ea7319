"""make bench: qmlir against PyTorch, side by side in one process.

Every group of variants (one `linear` shape at all precisions, or one SmolLM2 phase) is timed
round-robin in one process after warm-up: each round calls every variant once, and medians
are compared. Ratios are speedups over torch eager f32 measured in the same rounds (above 1
is faster than eager f32); bf16 rows also give the ratio over eager bf16, W8A8 rows over
`torch._int_mm` (PyTorch's own int8 GEMM on already-quantized operands: a bound, not a layer).
Ratios survive a noisy machine better than absolute times. Results also go to JSON.

Variants (qmlir ones go through torch.compile(backend="qmlir"); quantized ones are made by
qmlir.quantize and compiled from their quant-dialect IR, no PyTorch kernels inside):
  f32, bf16            the float module (bf16: module and input cast to bf16)
  W8A8                 int8 weights per output channel, int8 activations per token (dynamic)
  int8 WO / int4 WO    weight-only int8 per channel / int4 in groups of 128, f32 activations
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

CONFIGS = {
    "W8A8": dict(weight_dtype="int8", act_dtype="int8", act_granularity="token"),
    "int8 WO": dict(weight_dtype="int8"),
    "int4 WO": dict(weight_dtype="int4", weight_granularity="group", group_size=128),
}


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


def cpu_description() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cpus ({' '.join(isa) or 'no AVX-512'})"


def _compile(model, args, kwargs, backend):
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=False)
    t0 = time.perf_counter()
    compiled(*args, **kwargs)
    return (lambda: compiled(*args, **kwargs)), time.perf_counter() - t0


def _quantize(model, calib, name):
    import qmlir
    from qmlir.quantization import QuantConfig
    return qmlir.quantize(model, calib, QuantConfig(**CONFIGS[name]), progress=False)


def run_group(title: str, variants: dict, rounds: int, warmup: int, baselines: dict, tokens: int = 0) -> list:
    """variants: name -> (fn, first_call_s or None). baselines: ratio name -> variant name,
    applied to rows whose name starts with the key's precision prefix."""
    with torch.no_grad():
        medians = timed_round_robin({k: v[0] for k, v in variants.items()}, rounds, warmup)
    rows = []
    print(f"\n{title}")
    print(f"  {'variant':22} {'median':>10}  {'vs eager f32':>12}  other")
    for name, (_, first) in variants.items():
        row = {"group": title, "variant": name, "median_s": medians[name], "first_call_s": first,
               "speedup_vs_eager_f32": medians["eager f32"] / medians[name]}
        extra = []
        if tokens:
            row["tokens_per_s"] = tokens / medians[name]
            extra.append(f"{row['tokens_per_s']:8.1f} tok/s")
        for prefix, (label, base) in baselines.items():
            if name.startswith(prefix) and base in medians and base != name:
                row[f"speedup_vs_{label}"] = medians[base] / medians[name]
                extra.append(f"{medians[base] / medians[name]:5.2f}x vs {label}")
        rows.append(row)
        first_s = f"  (first call {first:.1f} s)" if first is not None and tokens else ""
        print(f"  {name:22} {medians[name] * 1e3:8.2f} ms  {row['speedup_vs_eager_f32']:11.2f}x  {'  '.join(extra)}"
              f"{first_s}", flush=True)
    return rows


def linear_group(m: int, rounds: int, warmup: int, inductor: bool, k: int = 4096, n: int = 4096) -> list:
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval()
    x = torch.randn(m, k)
    lin16, x16 = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval().to(torch.bfloat16), x.bfloat16()
    lin16.load_state_dict({key: v.bfloat16() for key, v in lin.state_dict().items()})
    v = {"eager f32": (lambda: lin(x), None)}
    with torch.no_grad():
        if inductor:
            v["inductor f32"] = _compile(lin, (x,), {}, "inductor")
        v["qmlir f32"] = _compile(lin, (x,), {}, "qmlir")
        v["eager bf16"] = (lambda: lin16(x16), None)
        v["qmlir bf16"] = _compile(lin16, (x16,), {}, "qmlir")
        xi, wi = torch.randint(-128, 128, (m, k), dtype=torch.int8), torch.randint(-128, 128, (k, n), dtype=torch.int8)
        try:
            torch._int_mm(xi, wi)
            v["torch._int_mm"] = (lambda: torch._int_mm(xi, wi), None)
        except RuntimeError:
            pass  # shapes torch._int_mm does not take on this CPU
        for name in CONFIGS:
            q = _quantize(lin, [x], name)
            v[f"qmlir {name}"] = _compile(q, (x,), {}, "qmlir")
    base = {"qmlir bf16": ("eager bf16", "eager bf16"), "qmlir W8A8": ("torch._int_mm", "torch._int_mm")}
    if inductor:
        base["qmlir f32"] = ("inductor", "inductor f32")
    return run_group(f"linear {k}x{n}, M={m}", v, rounds, warmup, base)


def smollm2_groups(rounds: int, warmup: int, inductor: bool, modes) -> list:
    """SmolLM2 generation with the KV cache: prefill (TTFT) and decode (benchmarks/bench_generate.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_generate import generation_groups
    return generation_groups(rounds, warmup, inductor, _quantize, modes)


def markdown(rows: list) -> str:
    """The results as the README's table: one line per variant, ratios against eager f32."""
    lines = ["| case | variant | median | vs eager f32 | other |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "compiled_code_s" in r:  # the decode step's split (benchmarks/bench_generate.py)
            lines.append(f"| {r['group']} | {r['variant']} | {r['median_s'] * 1e3:.2f} ms | - | compiled code "
                         f"{r['compiled_code_s'] * 1e3:.2f} ms, qmlir packing {r['qmlir_packing_s'] * 1e3:.3f} ms, "
                         f"outside {r['outside_s'] * 1e3:.2f} ms |")
            continue
        other = [f"{v:.2f}x vs {k[len('speedup_vs_'):]}" for k, v in r.items()
                 if k.startswith("speedup_vs_") and k != "speedup_vs_eager_f32"]
        if "tokens_per_s" in r and r.get("tokens_per_s"):
            other.append(f"{r['tokens_per_s']:.1f} tok/s")
        lines.append(f"| {r['group']} | {r['variant']} | {r['median_s'] * 1e3:.2f} ms | "
                     f"{r['speedup_vs_eager_f32']:.2f}x | {', '.join(other)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--m", type=int, nargs="*", default=[1, 16, 128], help="linear batch sizes")
    parser.add_argument("--skip-model", action="store_true", help="only the linear layers")
    parser.add_argument("--modes", default="bf16,int8 WO,int4 WO,W8A8",
                        help="SmolLM2 generation modes besides f32 (comma-separated; '' for f32 only)")
    parser.add_argument("--no-inductor", action="store_true", help="leave out torch.compile(inductor)")
    parser.add_argument("--json", default="benchmarks/results/latest.json")
    parser.add_argument("--markdown", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    parser.add_argument("--disk-cache", action="store_true",
                        help="use qmlir's on-disk compile cache (off by default: first-call times stay cold)")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())["rows"]))
        return 0
    if not args.disk_cache:
        os.environ["QMLIR_CACHE_DIR"] = "off"
    machine = cpu_description()
    load0 = os.getloadavg()[0]
    print(f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"ratios = eager f32 time / variant time; load average {load0:.1f}")
    rows = []
    for m in args.m:
        rows += linear_group(m, args.rounds, args.warmup, not args.no_inductor)
    if not args.skip_model:
        rows += smollm2_groups(args.rounds, args.warmup, not args.no_inductor,
                               [m.strip() for m in args.modes.split(",") if m.strip()])
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    load1 = os.getloadavg()[0]
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": machine, "load_average": [load0, load1], "rows": rows}, indent=2))
    # Other processes on the CPUs slow torch's spinning OpenMP threads far more than qmlir's
    # blocking workers: ratios against eager are only meaningful on a quiet machine.
    print(f"\nload average at start / end: {load0:.1f} / {load1:.1f} (on {os.cpu_count()} cpus)")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
