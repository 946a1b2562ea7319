"""A seeded mutation fuzzer for qmlir-opt and qmlir-run.

Seeds are the .mlir inputs of the lit suite (split at `// -----`); each case mutates one seed
(truncate, delete, duplicate, swap in a token from a dictionary of edge values, flip or insert
bytes, invalid UTF-8 included) and runs it through a tool with a random pipeline, in process
(each run is forked by the tools' own crash guard, so a case costs milliseconds, not a Python
start). A case passes when the tool exits 0, or exits 1 with an `error:` line; it fails on a
signal (the guard's "MLIR stopped with"), a Python traceback, an "internal error", any other
exit status, or a hang (a time limit per case).

    python tests/fuzz/fuzz_cli.py --cases 5000 --seed 1     (make fuzz)
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[2]

TOKENS = ["0", "1", "-1", "4096", "2147483648", "99999999999999999999", "-9223372036854775809", "0.5", "nan",
          "i1", "i3", "i4", "i7", "i8", "i64", "f16", "bf16", "f64", "index", "tensor<?xf32>", "tensor<0xf32>",
          "tensor<4xi4>", "memref<4xf32>", "vector<4xf32>", "{", "}", "(", ")", "<", ">", "[", "]", ",", ":", "=",
          "->", "%0", "%arg0", "%x", "@f", "#map", "^bb0", "\"", "!quant.uniform<i8:f32, 0.5:300>",
          "!quant.uniform<i2:f32, 0.5>", "!quant.uniform<i8:f32:1, {0.5,0.25}>", "dense<1.0>", "dense<>",
          "linalg.matmul", "quant.qcast", "quant.dcast", "arith.constant", "func.return", "permutation = [1, 0]",
          "qmlir.act_absmax = -1.0 : f32", "qmlir.kernel = {name = \"portable\"}",
          "qmlir.kernel = {name = \"int8_vnni\", mr = 0 : i64, nc = 0 : i64, kc = 0 : i64}"]

OPT_PIPELINES = [
    ["--canonicalize"],
    ["--cse", "--canonicalize"],
    ["--qmlir-lower-quant"],
    ["--qmlir-fuse-quantized-matmul", "--qmlir-lower-quant"],
    ["--qmlir-quant-semantics", "--qmlir-fold-transpose-into-matmul"],
    ["--qmlir-quantize-matmul=act=dynamic"],
    ["--qmlir-split-outliers"],
    ["--qmlir-mixed-precision"],
    ["--qmlir-select-kernels=features=avx512_bf16,avx512_vnni threads=2", "--qmlir-expand-kernels=stage=tensors"],
    ["--qmlir-protect-arguments", "--qmlir-distinct-results"],
    ["--qmlir-lower-to-cpu=features= threads=1"],
    ["--pass-pipeline=builtin.module(func.func(qmlir-lower-quant), canonicalize)"],
]


def seeds() -> List[str]:
    out = []
    for path in sorted((ROOT / "tests" / "lit").rglob("*.mlir")):
        for chunk in path.read_text(encoding="utf-8").split("// -----"):
            if "func.func" in chunk:
                out.append(chunk)
    return out


def mutate(text: str, rng: random.Random) -> bytes:
    data = text.encode()
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        n = len(data)
        if n == 0:
            break
        i = rng.randrange(n)
        kind = rng.randrange(7)
        if kind == 0:
            data = data[:i]
        elif kind == 1:
            data = data[:i] + data[i + rng.randint(1, 40):]
        elif kind == 2:
            j = min(n, i + rng.randint(1, 80))
            data = data[:j] + data[i:j] + data[j:]
        elif kind in (3, 4):
            j = min(n, i + rng.randint(1, 12))
            data = data[:i] + rng.choice(TOKENS).encode() + data[j:]
        elif kind == 5:
            data = data[:i] + bytes([rng.randrange(32, 127)]) + data[i + 1:]
        else:
            data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + data[i:]
    return data


@dataclass
class Outcome:
    ok: bool
    code: int
    stderr: str
    argv: List[str]


def run_case(tool_main, tool: str, argv: List[str], timeout: float) -> Outcome:
    """Run `tool_main(argv)` through the tool's crash guard, capturing fds 1 and 2."""
    from qmlir.tools.diagnostics import run_guarded
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        streams = sys.stdout, sys.stderr  # under pytest these are capture objects, not fds 1 and 2
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        try:
            code = run_guarded(tool, lambda: tool_main(argv), timeout=timeout)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    bad = ("Traceback" in text or "internal error" in text or "MLIR stopped with" in text
           or "gave up after" in text or code not in (0, 1) or (code == 1 and "error:" not in text))
    return Outcome(not bad, code, text, argv)


def fuzz(cases: int, seed: int, timeout: float = 60.0, workdir: Path | None = None, progress: bool = False):
    """Run `cases` mutated inputs; returns (number run, [failing Outcome])."""
    from qmlir.tools import opt, run
    rng = random.Random(seed)
    pool = seeds()
    failures = []
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="qmlir-fuzz-")) if own else workdir
    t0 = time.monotonic()
    for k in range(cases):
        path = workdir / f"case{k % 8}.mlir"
        path.write_bytes(mutate(rng.choice(pool), rng))
        if rng.random() < 0.08:
            outcome = run_case(run.main, "qmlir-run", [str(path), "--random-inputs", "--seed", str(k)], timeout)
        else:
            argv = [str(path), *rng.choice(OPT_PIPELINES)] + (["--split-input-file"] if rng.random() < 0.1 else [])
            outcome = run_case(opt.main, "qmlir-opt", argv, timeout)
        if not outcome.ok:
            kept = workdir / f"failure{len(failures)}.mlir"
            kept.write_bytes(path.read_bytes())
            outcome.argv = [str(kept)] + outcome.argv[1:]
            failures.append(outcome)
        if progress and (k + 1) % 250 == 0:
            print(f"  {k + 1}/{cases} cases, {len(failures)} failure(s), {time.monotonic() - t0:.0f} s", flush=True)
    return cases, failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    args = p.parse_args()
    t0 = time.monotonic()
    n, failures = fuzz(args.cases, args.seed, args.timeout, progress=True)
    print(f"fuzz: {n} cases, {len(failures)} failure(s), {time.monotonic() - t0:.0f} s (seed {args.seed})")
    for f in failures[:20]:
        tool = "qmlir-run" if "--random-inputs" in f.argv else "qmlir-opt"
        last = f.stderr.strip().splitlines()[-1] if f.stderr.strip() else ""
        print(f"  exit {f.code}: {tool} {' '.join(f.argv)}\n    {last[:300]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
