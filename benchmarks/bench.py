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

# PyTorch's OpenMP threads spin for a while after every parallel op; a variant called right
# after an eager one found them on the cores its own worker threads need (measured: qmlir's
# bf16 linear at M=1 took 2.67 ms instead of 1.08 ms). Every timed call waits SETTLE_S first,
# untimed, so no variant runs into the previous one's spinning threads. (OMP_WAIT_POLICY=PASSIVE
# would do it too, but slows torch's own many small ops: eager bf16 prefill took 2x longer.)
SETTLE_S = 0.003

# Library deprecation notices are noise in a table; a qmlir fallback is an error (the strict
# backend raises one anyway: a graph run eagerly must never be timed as a qmlir row).
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("error", message="qmlir: running this graph eagerly")

CONFIGS = {
    "W8A8": dict(weight_dtype="int8", act_dtype="int8", act_granularity="token"),
    "int8 WO": dict(weight_dtype="int8"),
    "int4 WO": dict(weight_dtype="int4", weight_granularity="group", group_size=128),
    # llama.cpp's Q8_0 x Q8_0 and Q4_0 x Q8_0: the presets (weights and activations in blocks of
    # 32, every linear; Q4_0's lm_head in 8 bits, as llama.cpp keeps its output matrix)
    "Q8_0 W8A8": "w8a8-block32",
    "Q4_0 W4A8": "w4a8-block32",
}


def timed_round_robin(fns: dict, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(SETTLE_S)
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
    """torch.compile(model) with `backend` ("qmlir": the strict backend, so a graph qmlir cannot
    compile is an error, never an eager run timed as a qmlir row), called once (the compile);
    a qmlir result must match the model's eager one."""
    if backend == "qmlir":
        import qmlir
        backend = qmlir.backend(strict=True)
        with torch.no_grad():
            expected = model(*args, **kwargs)
    else:
        expected = None
    compiled = torch.compile(model, backend=backend, dynamic=False)
    t0 = time.perf_counter()
    out = compiled(*args, **kwargs)
    first = time.perf_counter() - t0
    if expected is not None:
        err = float((out.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-30))
        if not err < 2e-2:
            raise RuntimeError(f"qmlir's output differs from eager's (max error {err:.3g} of the largest value)")
    return (lambda: compiled(*args, **kwargs)), first


# `qmlir autoquant smollm2 --budget 1% -o benchmarks/configs/smollm2-autoquant-1pct.yaml` on this
# machine: the per-layer schemes it chose (209 int8 weight-only layers, lm_head included, 2 int4)
AUTOQUANT = Path(__file__).parent / "configs" / "smollm2-autoquant-1pct.yaml"


def _quantize(model, calib, name):
    import qmlir
    from qmlir.quantization import QuantConfig
    if name == "autoquant 1%":
        cfg = QuantConfig.from_yaml(AUTOQUANT)
    else:  # a preset's name, or QuantConfig keys
        cfg = CONFIGS[name] if isinstance(CONFIGS[name], str) else QuantConfig(**CONFIGS[name])
    return qmlir.quantize(model, calib, cfg, progress=False)


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


L3_BYTES = 32 << 20  # this machine kind's last-level cache (../shared/notes/cpu-codegen.md)


def machine_limits() -> dict:
    """Measured once per run: DRAM read bandwidth (a sum over 512 MB, torch's threads) and the
    f32 / bf16 / int8 matmul throughput PyTorch reaches at 2048^3 (MKL / oneDNN): what each
    kernel case is compared with (the fraction is printed with it). These are achievable
    figures, not the ISA's peaks (a tuned kernel may pass torch's 2048^3 matmul)."""
    big = torch.ones(128 << 20)
    big.sum()
    t = timed_round_robin({"read": lambda: big.sum()}, 5, 1)["read"]
    limits = {"read_gb_per_s": big.numel() * 4 / t / 1e9}
    del big
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    ai, bi = torch.randint(-128, 128, (n, n), dtype=torch.int8), torch.randint(-128, 128, (n, n), dtype=torch.int8)
    fns = {"f32": lambda: a @ b, "bf16": lambda: a16 @ b16}
    try:
        torch._int_mm(ai, bi)
        fns["int8"] = lambda: torch._int_mm(ai, bi)
    except RuntimeError:
        pass
    for name, med in timed_round_robin(fns, 5, 1).items():
        limits[f"{name}_gflop_per_s"] = 2 * n ** 3 / med / 1e9
    return limits


# the compute limit each variant is judged against at M > 1 (M = 1 is bandwidth-bound)
_COMPUTE = {"f32": "f32", "bf16": "bf16", "W8A8": "int8", "_int_mm": "int8", "int8 WO": "f32", "int4 WO": "f32"}


def _kind(variant: str) -> str:
    return next((v for key, v in _COMPUTE.items() if key in variant), "")


def _limit_fraction(name: str, m: int, k: int, n: int, median: float, weight_bytes: int, limits: dict) -> dict:
    if not limits:
        return {}
    if m == 1:
        gbs = weight_bytes / median / 1e9
        return {"weight_gb_per_s": gbs, "fraction_of_limit": gbs / limits["read_gb_per_s"]}
    kind = _kind(name)
    peak = limits.get(f"{kind}_gflop_per_s") if kind else None
    if not peak:
        return {}
    gflops = 2 * m * k * n / median / 1e9
    return {"gflop_per_s": gflops, "fraction_of_limit": gflops / peak, "limit_kind": kind}


def linear_group(m: int, rounds: int, warmup: int, inductor: bool, k: int = 4096, n: int = 4096,
                 limits: dict | None = None) -> list:
    """One linear layer at every precision. At M = 1 (a decode step's GEMV) each variant
    rotates over copies of the layer with different weights, enough to exceed the L3 twice,
    as a decode streams every weight once: calling one layer again and again would time its
    weight from the cache (an int8 4096^2 weight fits the 32 MB L3; the f32 one does not)."""
    torch.manual_seed(0)
    x = torch.randn(m, k)
    x16 = x.bfloat16()

    def copies(bytes_each):
        return 1 if m > 1 else max(2, -(-2 * L3_BYTES // bytes_each))

    def layers(count, dtype=torch.float32):
        out = []
        for _ in range(count):
            lin = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval()
            out.append(lin if dtype == torch.float32 else lin.to(dtype))
        return out

    def rotating(fns):
        state = {"i": 0}

        def call():
            fn = fns[state["i"] % len(fns)]
            state["i"] += 1
            return fn()
        return call

    def compiled(mods, args, backend):
        fns, first = [], None
        for mod in mods:
            fn, t = _compile(mod, args, {}, backend)
            fns.append(fn)
            first = t if first is None else first
        return rotating(fns), first

    per_weight = {"f32": 4 * k * n, "bf16": 2 * k * n, "Q8_0 W8A8": k * n * 9 // 8, "Q4_0 W4A8": k * n * 5 // 8,
                  "W8A8": k * n, "int8 WO": k * n,
                  "int4 WO": k * n // 2, "_int_mm": k * n}  # Q8_0, Q4_0: one f32 scale per 32 weights
    f32s, bf16s = layers(copies(per_weight["f32"])), layers(copies(per_weight["bf16"]), torch.bfloat16)
    v = {"eager f32": (rotating([lambda lin=lin: lin(x) for lin in f32s]), None)}
    with torch.no_grad():
        if inductor:
            v["inductor f32"] = compiled(f32s, (x,), "inductor")
        v["qmlir f32"] = compiled(f32s, (x,), "qmlir")
        v["eager bf16"] = (rotating([lambda lin=lin: lin(x16) for lin in bf16s]), None)
        v["qmlir bf16"] = compiled(bf16s, (x16,), "qmlir")
        xi = torch.randint(-128, 128, (m, k), dtype=torch.int8)
        wis = [torch.randint(-128, 128, (k, n), dtype=torch.int8) for _ in range(copies(per_weight["_int_mm"]))]
        try:
            torch._int_mm(xi, wis[0])
            v["torch._int_mm"] = (rotating([lambda w=w: torch._int_mm(xi, w) for w in wis]), None)
        except RuntimeError:
            pass  # shapes torch._int_mm does not take on this CPU
        for name in CONFIGS:
            mods = [_quantize(lin, [x], name) for lin in layers(copies(per_weight[name]))]
            v[f"qmlir {name}"] = compiled(mods, (x,), "qmlir")
    base = {"qmlir bf16": ("eager bf16", "eager bf16"), "qmlir W8A8": ("torch._int_mm", "torch._int_mm"),
            "qmlir Q8_0 W8A8": ("torch._int_mm", "torch._int_mm"), "qmlir Q4_0 W4A8": ("torch._int_mm", "torch._int_mm"),
            "qmlir int8 WO": ("eager bf16", "eager bf16"), "qmlir int4 WO": ("eager bf16", "eager bf16")}
    if inductor:
        base["qmlir f32"] = ("inductor", "inductor f32")
    title = f"linear {k}x{n}, M={m}" + (" (weights rotated past the L3)" if m == 1 else "")
    rows = run_group(title, v, rounds, warmup, base)
    for row in rows:
        key = next((key for key in per_weight if key in row["variant"]), "f32")
        row.update(_limit_fraction(row["variant"], m, k, n, row["median_s"], per_weight[key], limits or {}))
        if "fraction_of_limit" in row:
            what = f"{row['weight_gb_per_s']:.1f} GB/s" if m == 1 else f"{row['gflop_per_s']:.0f} GFLOP/s"
            print(f"    {row['variant']:22} {what}, {100 * row['fraction_of_limit']:.0f}% of "
                  + ("the DRAM read bandwidth" if m == 1 else f"torch's 2048^3 {row['limit_kind']} matmul"))
    return rows


def smollm2_groups(rounds: int, warmup: int, inductor: bool, modes) -> list:
    """SmolLM2 generation with the KV cache: prefill (TTFT) and decode (benchmarks/bench_generate.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_generate import generation_groups
    return generation_groups(rounds, warmup, inductor, _quantize, modes)


def markdown(rows: list) -> str:
    """The results as the README's table: one line per variant, ratios against eager f32."""
    lines = ["| case | variant | median | vs eager f32 | other |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "first_token_s" in r:  # process start to first token (benchmarks/warm_start.py)
            lines.append(f"| {r['group']} | {r['variant']} | {r['first_token_s']:.1f} s | - | imports "
                         f"{r['import_s']:.1f} s, model load {r['load_s']:.1f} s, generate to its first token "
                         f"{r['generate_first_token_s']:.1f} s |")
            continue
        if "compiled_code_s" in r:  # the decode step's split (benchmarks/bench_generate.py)
            lines.append(f"| {r['group']} | {r['variant']} | {r['median_s'] * 1e3:.2f} ms | - | compiled code "
                         f"{r['compiled_code_s'] * 1e3:.2f} ms, qmlir packing {r['qmlir_packing_s'] * 1e3:.3f} ms, "
                         f"outside {r['outside_s'] * 1e3:.2f} ms |")
            continue
        other = [f"{v:.2f}x vs {k[len('speedup_vs_'):]}" for k, v in r.items()
                 if k.startswith("speedup_vs_") and k != "speedup_vs_eager_f32"]
        if "tokens_per_s" in r and r.get("tokens_per_s"):
            other.append(f"{r['tokens_per_s']:.1f} tok/s")
        if "weight_gb_per_s" in r:
            other.append(f"{r['weight_gb_per_s']:.1f} GB/s ({100 * r['fraction_of_limit']:.0f}% of DRAM read)")
        elif "gflop_per_s" in r:
            other.append(f"{r['gflop_per_s']:.0f} GFLOP/s ({100 * r['fraction_of_limit']:.0f}% of torch's 2048^3 "
                         f"{r.get('limit_kind') or _kind(r['variant'])} matmul)")
        lines.append(f"| {r['group']} | {r['variant']} | {r['median_s'] * 1e3:.2f} ms | "
                     f"{r['speedup_vs_eager_f32']:.2f}x | {', '.join(other)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--m", type=int, nargs="*", default=[1, 16, 128], help="linear batch sizes")
    parser.add_argument("--skip-model", action="store_true", help="only the linear layers")
    parser.add_argument("--modes", default="bf16,int8 WO,int4 WO,W8A8,Q8_0 W8A8,Q4_0 W4A8,autoquant 1%",
                        help="SmolLM2 generation modes besides f32 (comma-separated; '' for f32 only)")
    parser.add_argument("--no-inductor", action="store_true", help="leave out torch.compile(inductor)")
    parser.add_argument("--json", default="benchmarks/results/latest.json")
    parser.add_argument("--markdown", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    parser.add_argument("--no-warm-start", action="store_true",
                        help="leave out the process-start-to-first-token runs (benchmarks/warm_start.py)")
    parser.add_argument("--disk-cache", action="store_true",
                        help="use qmlir's on-disk compile cache (off by default: first-call times stay cold)")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())["rows"]))
        return 0
    if not args.disk_cache:
        os.environ["QMLIR_CACHE_DIR"] = "off"
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_generate import _dynamo_limits
    _dynamo_limits()  # every layer copy is a Dynamo graph of the same code: no silent eager past a limit
    machine = cpu_description()
    load0 = os.getloadavg()[0]
    print(f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"ratios = eager f32 time / variant time; load average {load0:.1f}")
    limits = machine_limits()
    print("limits: DRAM read {read_gb_per_s:.1f} GB/s; matmul 2048^3 f32 {f32_gflop_per_s:.0f}, bf16 "
          "{bf16_gflop_per_s:.0f} GFLOP/s".format(**limits)
          + (f", int8 {limits['int8_gflop_per_s']:.0f} GOP/s" if "int8_gflop_per_s" in limits else ""))
    rows = []
    for m in args.m:
        rows += linear_group(m, args.rounds, args.warmup, not args.no_inductor, limits=limits)
    if not args.skip_model:
        rows += smollm2_groups(args.rounds, args.warmup, not args.no_inductor,
                               [m.strip() for m in args.modes.split(",") if m.strip()])
    if not args.skip_model and not args.no_warm_start:
        import warm_start
        res = warm_start.measure(1)
        rows += warm_start.rows(res)
        print("\nprocess start to first token (SmolLM2 f32, fresh processes)")
        for r in warm_start.rows(res):
            print(f"  {r['variant']:26} {r['first_token_s']:6.1f} s  (imports {r['import_s']:.1f} s, model load "
                  f"{r['load_s']:.1f} s, generate to its first token {r['generate_first_token_s']:.1f} s)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    load1 = os.getloadavg()[0]
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": machine, "load_average": [load0, load1], "limits": limits,
                               "rows": rows}, indent=2))
    # Other processes on the CPUs slow torch's spinning OpenMP threads far more than qmlir's
    # blocking workers: ratios against eager are only meaningful on a quiet machine.
    print(f"\nload average at start / end: {load0:.1f} / {load1:.1f} (on {os.cpu_count()} cpus)")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
