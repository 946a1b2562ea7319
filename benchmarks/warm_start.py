"""Time to the first generated token of a new process: cold (empty qmlir cache) and warm.

Each run is a fresh Python process that loads SmolLM2-135M (`qmlir.zoo.smollm2`), compiles
`model.forward` with the qmlir backend and calls `generate` (static cache, greedy) on a
23-token prompt; the time is from just before the process is started to the first new token,
so it includes the interpreter, the imports, loading the model, Dynamo's tracing, qmlir's
import and lowering (or its artifact cache), LLVM (or the machine-code cache) and the prefill.
The cold run uses an empty cache directory, the warm runs the same directory again, and an
eager run (no compile, the model from that cache) is the baseline. `make bench` runs it too.

    python benchmarks/warm_start.py [--runs 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PROMPT = "The GNU General Public License is a free, copyleft license for software and other kinds of works."

CHILD = r"""
import json, os, sys, time
t0 = float(os.environ["QMLIR_BENCH_T0"])
import torch
import qmlir
from qmlir import zoo
from qmlir.evaluation import GenerationTimer
t_import = time.time()
model, tok = zoo.smollm2()
t_load = time.time()
if sys.argv[2] == "qmlir":
    qmlir.compile_for_generate(model)
ids = tok(sys.argv[1], return_tensors="pt").input_ids
timer = GenerationTimer()
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=4, do_sample=False, cache_implementation="static", streamer=timer)
first = time.time() - (time.perf_counter() - timer.times[0])  # the first new token, on the wall clock
print(json.dumps({"prompt_tokens": int(ids.shape[1]), "import_s": t_import - t0, "load_s": t_load - t_import,
                  "first_token_s": first - t0, "ttft_in_generate_s": timer.ttft_s,
                  "tokens": out[0, ids.shape[1]:].tolist()}))
"""


def run_once(cache: str, backend: str = "qmlir") -> dict:
    env = dict(os.environ, QMLIR_CACHE_DIR=cache, QMLIR_BENCH_T0=repr(time.time()))
    done = subprocess.run([sys.executable, "-c", CHILD, PROMPT, backend], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"warm-start child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(runs: int = 1) -> dict:
    """{"cold": {...}, "warm": [{...}, ...], "eager": {...}}: one cold run, `runs` warm ones, and
    eager PyTorch (no compile; the model loaded from the same cache) for comparison."""
    with tempfile.TemporaryDirectory(prefix="qmlir-warm-start-") as cache:
        cold = run_once(cache)
        warm = [run_once(cache) for _ in range(runs)]
        eager = run_once(cache, "eager")
    return {"cold": cold, "warm": warm, "eager": eager}


def rows(res: dict) -> list:
    """make bench's rows: seconds from process start to the first new token."""
    base = res["eager"]["first_token_s"]
    out = []
    for name, r in [("eager f32 (model cached)", res["eager"]), ("qmlir f32, empty cache", res["cold"]),
                    ("qmlir f32, warm cache", min(res["warm"], key=lambda r: r["first_token_s"]))]:
        out.append({"group": "process start to first token (SmolLM2, 23-token prompt)", "variant": name,
                    "first_token_s": r["first_token_s"], "import_s": r["import_s"], "load_s": r["load_s"],
                    "generate_first_token_s": r["ttft_in_generate_s"], "eager_first_token_s": base})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="warm runs after the cold one")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    res = measure(args.runs)
    res["load_average"] = [load0, os.getloadavg()[0]]
    for name, r in [("cold", res["cold"])] + [(f"warm {i + 1}", r) for i, r in enumerate(res["warm"])] + \
            [("eager", res["eager"])]:
        print(f"{name:7s} first token {r['first_token_s']:6.1f} s  (imports {r['import_s']:.1f} s, model load "
              f"{r['load_s']:.1f} s, generate to its first token {r['ttft_in_generate_s']:.1f} s)")
    same = all(r["tokens"] == res["cold"]["tokens"] for r in res["warm"] + [res["eager"]])
    print(f"tokens equal across runs: {same}; load average {load0:.1f} / {res['load_average'][1]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
