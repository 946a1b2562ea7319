"""`qmlir generate MODEL [--quantized Q] --prompt TEXT --max-new-tokens N`: Hugging Face
`generate` with the static KV cache, the forward compiled by qmlir.compile_for_generate (the
prefill in chunks of 32 tokens, one graph for every prompt length, and the decode step; the
cache written in place); streams the continuation, then prints time to first token and
tokens/s."""
from __future__ import annotations

import sys

import torch

from qmlir.cli import common


def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate text with the KV cache through qmlir, streamed, with tokens/s",
        description="Continue a prompt with MODEL (or the quantized model in --quantized): Hugging Face "
                    "generate with cache_implementation='static', its forward compiled by qmlir. The "
                    "continuation streams to standard output; time to first token and decode tokens/s "
                    "go to standard error. The first call compiles (its time is printed apart).",
        epilog="example: qmlir generate smollm2 --prompt 'The GNU General Public License is' "
               "--max-new-tokens 48")
    common.model_arg(p)
    p.add_argument("--quantized", metavar="Q.safetensors", help="a file written by qmlir quantize")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", metavar="TEXT", help="the prompt")
    src.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE ('-': standard input)")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="tokens to generate (default 64)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template "
                                                       "(a user turn) for instruction-tuned models")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 (default): greedy; above 0: sampling at that temperature")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling (with --temperature)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    p.add_argument("--dtype", choices=sorted(common.DTYPES), default="float32",
                   help="the float model's dtype (default float32; --quantized needs float32)")
    p.add_argument("--eager", action="store_true", help="run eagerly, without qmlir (to compare)")
    p.set_defaults(run=run)


class Streamer:
    """Prints new text as tokens arrive (whole characters only: a token that ends inside a
    multi-byte character waits for the next)."""

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out = tokenizer, out if out is not None else sys.stdout
        self.tokens, self.printed = [], 0

    def __call__(self, value: torch.Tensor) -> None:
        self.tokens += [int(t) for t in value.reshape(-1)]
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        self.out.write(text[self.printed:])
        self.out.flush()
        self.printed = len(text)

    def finish(self) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        self.out.write(text[self.printed:] + "\n")
        self.out.flush()


def prompt_ids(tokenizer, args) -> torch.Tensor:
    text = args.prompt if args.prompt is not None else common.read_text_file(args.prompt_file, "--prompt-file")
    if not text.strip():
        raise common.CliError("the prompt is empty")
    if args.chat:
        if not getattr(tokenizer, "chat_template", None):
            raise common.CliError("--chat: this model's tokenizer has no chat template")
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
    else:
        ids = tokenizer(text, return_tensors="pt").input_ids
    if ids.numel() == 0:
        raise common.CliError("the prompt has no tokens")
    return ids


def _after(length: int):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class After(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= length, dtype=torch.bool)

    return StoppingCriteriaList([After()])


def run(args) -> int:
    from qmlir.evaluation import GenerationTimer
    if args.max_new_tokens < 1:
        raise common.CliError(f"--max-new-tokens {args.max_new_tokens}: expected at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise common.CliError("--temperature must be >= 0 and --top-p in (0, 1]")
    if args.quantized and args.dtype != "float32":
        raise common.CliError("--quantized takes the float32 model (leave --dtype at float32)")
    loaded = common.load_model(args.model, args.dtype)
    model = common.load_quantized_over(loaded, args.quantized)
    tok = loaded.tokenizer
    ids = prompt_ids(tok, args)
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    sample = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p) if args.temperature > 0 \
        else dict(do_sample=False)
    restore = None
    if not args.eager:  # the prefill in fixed chunks: one compile for every prompt length
        import qmlir
        restore = qmlir.compile_for_generate(model, backend=qmlir.backend(strict=True)).restore
    label = "eager" if args.eager else "qmlir"
    try:
        with torch.no_grad():
            if not args.eager:  # the two graphs (this prompt length's prefill, the decode step) compile
                common.say(f"qmlir generate: {loaded.description}"
                           f"{', quantized ' + args.quantized if args.quantized else ''}; compiling the "
                           "prefill and the decode step ...")
                watch = common.Stopwatch()
                # the same max_new_tokens (the static cache's length is part of both graphs' shapes),
                # stopped after two tokens
                model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                               cache_implementation="static", pad_token_id=pad,
                               stopping_criteria=_after(ids.shape[1] + 2))
                common.say(f"compiled in {watch.seconds:.1f} s")
            torch.manual_seed(args.seed)
            streamer = Streamer(tok)
            timer = GenerationTimer(on_token=streamer)
            model.generate(ids, max_new_tokens=args.max_new_tokens, cache_implementation="static",
                           pad_token_id=pad, streamer=timer, **sample)
    finally:
        if restore is not None:
            restore()
    streamer.finish()
    n = len(timer.tokens)
    line = f"{label}: prompt {ids.shape[1]} tokens, time to first token {timer.ttft_s * 1e3:.0f} ms"
    if n >= 2:
        line += f", {n} new tokens, decode {timer.decode_tokens_per_s:.1f} tokens/s"
    else:
        line += f", {n} new token"
    common.say(line)
    return 0
