"""`qmlir eval MODEL [--quantized Q.safetensors] --text FILE`: perplexity, eager and compiled by
qmlir, with the time of each."""
from __future__ import annotations

import math
import statistics
import time

import torch

from qmlir.cli import common


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="perplexity of a model (float or quantized), eager and compiled by qmlir",
        description="Perplexity of MODEL (or of the quantized model in --quantized, built on MODEL) on a "
                    "text, in windows of --window tokens: eagerly and through torch.compile(backend=qmlir), "
                    "with the time per window of each.",
        epilog="example: qmlir eval smollm2 --quantized smollm2-w8a8.safetensors --text LICENSE")
    common.model_arg(p)
    p.add_argument("--quantized", metavar="Q.safetensors", help="a file written by qmlir quantize")
    text_args(p)
    p.add_argument("--no-eager", action="store_true", help="only the qmlir-compiled model")
    p.add_argument("--no-compile", action="store_true", help="only the eager model")
    p.set_defaults(run=run)


def text_args(p, default_tokens: int = 1024) -> None:
    p.add_argument("--text", metavar="FILE", help="UTF-8 text to score ('-' for standard input)")
    p.add_argument("--text-corpus", metavar="NAME", help="a shipped text to score (default: gpl-3)")
    p.add_argument("--tokens", type=int, default=default_tokens, metavar="N",
                   help=f"score the first N tokens (default {default_tokens}; fewer if the text is shorter, "
                        "in whole windows)")
    p.add_argument("--window", type=int, default=256, metavar="T", help="tokens per window (default 256)")


def eval_windows(tokenizer, args) -> tuple:
    """(windows, what the text is) for --text/--text-corpus/--tokens/--window."""
    if args.text is not None and args.text_corpus is not None:
        raise common.CliError("give --text or --text-corpus, not both")
    if args.text is not None:
        text, what = common.read_text_file(args.text, "--text"), f"--text '{args.text}'"
    else:
        name = args.text_corpus or "gpl-3"
        text, what = common.corpus_text(name, "--text-corpus"), f"text '{name}'"
    if args.tokens < 2 or args.window < 2:
        raise common.CliError(f"--tokens and --window must be at least 2 (got {args.tokens}, {args.window})")
    ids = common.token_ids(tokenizer, text)
    n = min(args.tokens, ids.numel()) // args.window
    if n == 0:
        raise common.CliError(f"{what} has {ids.numel()} tokens, fewer than one window of {args.window}")
    return common.windows(ids, n, args.window, what, spread=False), what


def score(forward, windows, desc: str) -> tuple:
    """(perplexity, median seconds per window, seconds of the first window) of `forward`."""
    from tqdm.auto import tqdm
    from qmlir.evaluation import nll
    total, count, times = 0.0, 0, []
    with torch.no_grad():
        for ids in tqdm(windows, desc=desc, unit="window", leave=False):
            t0 = time.perf_counter()
            logits = forward(ids)
            times.append(time.perf_counter() - t0)
            s, n = nll(logits, ids)
            total, count = total + s, count + n
    later = times[1:] or times
    return math.exp(total / count), statistics.median(later), times[0]


def run(args) -> int:
    if args.no_eager and args.no_compile:
        raise common.CliError("--no-eager and --no-compile leave nothing to run")
    loaded = common.load_model(args.model)
    model = common.load_quantized_over(loaded, args.quantized)
    windows, what = eval_windows(loaded.tokenizer, args)
    label = "quantized " + args.quantized if args.quantized else "float32"
    common.say(f"qmlir eval: {loaded.description}, {label}; {what}: {len(windows)} x {args.window} tokens")
    rows = []
    if not args.no_eager:
        rows.append(("eager",) + score(lambda x: model(x, use_cache=False).logits, windows, "eager"))
    if not args.no_compile:
        compiled = common.compiled(model)
        rows.append(("qmlir",) + score(lambda x: compiled(x, use_cache=False).logits, windows, "qmlir"))
    print(f"{'':8}{'perplexity':>12}{'ms/window':>12}{'tokens/s':>10}{'first window':>14}")
    for name, ppl, t, first in rows:
        print(f"{name:8}{ppl:>12.4f}{t * 1e3:>12.1f}{args.window / t:>10.0f}{first:>12.2f} s")
    if len(rows) == 2:
        ratio = rows[0][2] / rows[1][2]
        print(f"perplexity qmlir / eager - 1: {rows[1][1] / rows[0][1] - 1:+.2e}; qmlir is "
              f"{ratio if ratio >= 1 else 1 / ratio:.2f}x {'faster' if ratio >= 1 else 'slower'} than eager per "
              "window (medians after the first window, whose qmlir time includes the compile)")
    return 0
