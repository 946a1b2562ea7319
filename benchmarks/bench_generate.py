"""Generation with a KV cache on SmolLM2-135M: prefill and decode, side by side in one process.

Every variant runs the Hugging Face model's own forward with a `StaticCache` of 640 positions
(eager's dynamic cache is the one exception): qmlir and inductor compile `model.forward`
(dynamic=False: one graph per prompt length, one decode graph for every position).

  TTFT / prefill tok/s   a prompt of 32 and of 128 tokens, written into the cache from position 0
                         (qmlir: one graph per length; "chunks of 32" is qmlir.compile_for_generate's
                         prefill, one graph for both lengths)
  decode tok/s @ctx      one token at position ctx (128 or 512): its attention reads ctx cached
                         positions (the static cache's masked positions up to 640 are read too).
                         The context is filled in chunks of 128, so ctx 512 reuses the 128 prefill.
  generate               HF `model.generate` of a 23-token prompt and 32 new tokens, end to end

qmlir's per-step overhead (Python between the caller and the compiled code: Dynamo's guards,
AOT autograd's wrapper, qmlir's argument packing) is the decode step's time minus the time spent
inside the compiled function, and qmlir's own part (argument checks and packing) is printed apart.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch

CTX_LEN = 640
SETTLE_S = 0.003
PROMPTS = (32, 128)
CHUNK = 32  # qmlir.compile_for_generate's prefill chunk (its default)
CONTEXTS = (128, 512)


def _forward(model, backend):
    if backend is None:
        return model.forward
    return torch.compile(model.forward, backend=backend, dynamic=False)


def _dynamo_limits() -> None:
    """Every compiled variant captures the same code (the model class's forward): three graphs
    each (two prompt lengths and the decode step), more than Dynamo's default recompile limit of
    8 per code object, past which Dynamo runs the frame eagerly without a word, and an eager run
    would be timed as a compiled row. Raise the limit, and make hitting it an error."""
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.accumulated_recompile_limit = 4096
    torch._dynamo.config.fail_on_recompile_limit_hit = True


class Variant:
    """One model and forward (eager or compiled) with its own cache."""

    def __init__(self, name, model, backend=None, dynamic_cache=False, graphs=None):
        from transformers import DynamicCache, StaticCache
        self.name, self.model, self.backend = name, model, backend
        self.graphs = graphs if graphs is not None else []  # qmlir's compiled graphs, in order
        self.dynamic = dynamic_cache
        self.cache = DynamicCache(config=model.config) if dynamic_cache else StaticCache(config=model.config,
                                                                                         max_cache_len=CTX_LEN)
        with torch.no_grad():  # the static cache allocates its tensors at its first use: do it eagerly
            model(input_ids=torch.zeros(1, 1, dtype=torch.long), cache=self.cache, cache_position=torch.arange(1))
        self.forward = _forward(model, backend)
        self.first_call_s = {}
        self.decode_graph = None

    def run(self, ids, pos):
        if self.dynamic and self.cache.get_seq_length() > pos:
            self.cache.crop(pos - self.cache.get_seq_length())  # back to `pos` cached tokens
        elif not self.dynamic:  # a static layer writes at its own count of cached tokens: set it to `pos`
            for layer in self.cache.layers:
                layer.cumulative_length.fill_(pos)
        positions = torch.arange(pos, pos + ids.shape[1])
        # logits_to_keep=1: the last position's logits only, as generate asks for them
        return self.forward(input_ids=ids, cache=self.cache, cache_position=positions, use_cache=True,
                            logits_to_keep=1).logits

    def fill(self, ids, upto):
        """Write the first `upto` tokens of `ids` into the cache (chunks of 128 on a static cache)."""
        if self.dynamic:
            return self.run(ids[:, :upto], 0)
        for start in range(0, upto, 128):
            self.run(ids[:, start:min(upto, start + 128)], start)


def _round_robin(variants, call, rounds, warmup):
    for _ in range(warmup):
        for v in variants:
            call(v)
    times = {v.name: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            time.sleep(SETTLE_S)  # torch's spinning OpenMP threads go idle (benchmarks/bench.py)
            t0 = time.perf_counter()
            call(v)
            times[v.name].append(time.perf_counter() - t0)
    return {k: statistics.median(t) for k, t in times.items()}


@contextmanager
def _time_inside(function):
    """Accumulate the time spent in `function`'s compiled code, and in qmlir's call around it."""
    from qmlir.runtime.cpu import CpuFunction
    stats = {"inside": 0.0, "call": 0.0, "n": 0}
    inner, outer = function._fn, CpuFunction.__call__

    def timed_inner(packed):
        t0 = time.perf_counter()
        inner(packed)
        stats["inside"] += time.perf_counter() - t0

    def timed_call(self, *args):
        if self is not function:
            return outer(self, *args)
        t0 = time.perf_counter()
        out = outer(self, *args)
        stats["call"] += time.perf_counter() - t0
        stats["n"] += 1
        return out

    function._fn = timed_inner
    CpuFunction.__call__ = timed_call
    try:
        yield stats
    finally:
        function._fn = inner
        CpuFunction.__call__ = outer


MODES = ("bf16", "int8 WO", "int4 WO", "W8A8", "Q8_0 W8A8", "Q4_0 W4A8")


def generation_groups(rounds: int, warmup: int, inductor: bool, quantize, modes=MODES) -> list:
    """The rows of every generation measurement; `quantize(model, calib, name)` makes a mode
    (qmlir f32 and eager f32 always run; `modes` are the others)."""
    import qmlir
    from qmlir import zoo
    _dynamo_limits()
    model, tok = zoo.smollm2(torch.float32)
    model16 = zoo.smollm2(torch.bfloat16)[0] if "bf16" in modes else None
    ids = tok(zoo.gpl3_text(), return_tensors="pt").input_ids[:, :CTX_LEN]
    graphs = {}

    def qmlir_backend(name):
        graphs[name] = []
        return qmlir.backend(strict=True, on_compile=graphs[name].append)

    def compiled(name, m):
        backend = qmlir_backend(name)
        return Variant(name, m, backend, graphs=graphs[name])

    calib = [{"input_ids": ids[:, 128 * i:128 * (i + 1)], "use_cache": False} for i in range(2)]
    variants = [Variant("eager f32 (dynamic cache)", model, dynamic_cache=True),
                Variant("eager f32", model)]
    if inductor:
        variants.append(Variant("inductor f32", model, "inductor"))
    variants.append(compiled("qmlir f32", model))
    if "bf16" in modes:
        variants += [Variant("eager bf16", model16), compiled("qmlir bf16", model16)]
    for name in modes:
        if name != "bf16":
            variants.append(compiled(f"qmlir {name}", quantize(model, calib, name)))
    # the user's prefill (qmlir.compile_for_generate: chunks of 32, one graph for every prompt
    # length), in the prefill rows only, beside the exact-length graphs above
    chunked = Variant(f"qmlir f32, chunks of {CHUNK}", model, graphs=[])
    wrapper = qmlir.compile_for_generate(model, chunk=CHUNK,
                                         backend=qmlir.backend(strict=True, on_compile=chunked.graphs.append))
    wrapper.restore()  # the wrapper keeps its compiled forward; model.forward stays eager
    chunked.forward = wrapper
    prefill_variants = variants + [chunked]
    rows = []
    with torch.no_grad():
        for length in PROMPTS:
            prompt = ids[:, :length]
            for v in prefill_variants:  # first calls: the compiles
                before = len(v.graphs)
                t0 = time.perf_counter()
                v.run(prompt, 0)
                v.first_call_s[f"prefill {length}"] = time.perf_counter() - t0
                expected = (1 if length == PROMPTS[0] else 0) if v is chunked else 1
                if v.name.startswith("qmlir") and len(v.graphs) != before + expected:
                    raise RuntimeError(f"{v.name}: the {length}-token prefill compiled {len(v.graphs) - before} "
                                       f"qmlir graphs, expected {expected}")
            med = _round_robin(prefill_variants, lambda v: v.run(prompt, 0).argmax(-1), rounds, warmup)
            rows += _rows(f"SmolLM2-135M prefill, {length}-token prompt (TTFT)", prefill_variants, med, length,
                          f"prefill {length}")
        for ctx in CONTEXTS:
            step = {"i": 0}
            for v in variants:
                v.fill(ids, ctx)
                before = len(v.graphs)
                t0 = time.perf_counter()
                v.run(ids[:, ctx:ctx + 1], ctx)
                v.first_call_s[f"decode {ctx}"] = time.perf_counter() - t0
                if v.name.startswith("qmlir") and v.decode_graph is None:
                    if len(v.graphs) != before + 1:  # the first one-token call compiles the decode graph
                        raise RuntimeError(f"{v.name}: the first decode step compiled {len(v.graphs) - before} "
                                           "qmlir graphs, expected 1")
                    v.decode_graph = v.graphs[-1]

            def decode(v, ctx=ctx):
                pos = ctx + step["i"] % 8  # positions ctx..ctx+7, rewritten every 8 rounds
                v.run(ids[:, pos:pos + 1], pos).argmax(-1)

            def advance(v, _decode=decode):
                _decode(v)
                if v is variants[-1]:
                    step["i"] += 1
            med = _round_robin(variants, advance, rounds * 2, warmup)
            rows += _rows(f"SmolLM2-135M decode at context {ctx} (KV cache of {CTX_LEN})", variants, med, 1,
                          f"decode {ctx}")
        rows += _overhead_rows(variants, ids)
        rows += _generate_rows(model, tok, rounds, qmlir_backend)
    return rows


def _rows(title, variants, med, tokens, phase):
    base = med["eager f32"]
    print(f"\n{title}")
    print(f"  {'variant':26} {'median':>10}  {'vs eager f32':>12}  {'tok/s':>9}  other")
    rows = []
    for v in variants:
        t = med[v.name]
        row = {"group": title, "variant": v.name, "median_s": t, "speedup_vs_eager_f32": base / t,
               "tokens_per_s": tokens / t, "first_call_s": v.first_call_s.get(phase)}
        extra = []
        for label, ref in (("eager bf16", "eager bf16"), ("inductor f32", "inductor f32")):
            if ref in med and v.name.startswith("qmlir") and ((label == "eager bf16") != (v.name == "qmlir f32")):
                row[f"speedup_vs_{label}"] = med[ref] / t
                extra.append(f"{med[ref] / t:5.2f}x vs {label}")
        rows.append(row)
        print(f"  {v.name:26} {t * 1e3:8.2f} ms  {base / t:11.2f}x  {tokens / t:9.1f}  {'  '.join(extra)}", flush=True)
    return rows


def _overhead_rows(variants, ids):
    """The qmlir f32 decode step split into the compiled code and what runs around it."""
    v = next(x for x in variants if x.name == "qmlir f32")
    decode = v.decode_graph
    ctx, steps = CONTEXTS[0], 32
    v.fill(ids, ctx)
    weight_bytes = sum(torch.Size(s.shape).numel() * s.dtype.itemsize for s in decode.function.inputs)
    with _time_inside(decode.function) as stats:
        t0 = time.perf_counter()
        for i in range(steps):
            v.run(ids[:, ctx + i % 8:ctx + i % 8 + 1], ctx + i % 8)
        total = (time.perf_counter() - t0) / steps
    if not stats["n"] or not stats["inside"]:
        raise RuntimeError("the qmlir f32 decode steps did not run the compiled decode graph")
    inside = stats["inside"] / stats["n"]
    packing = stats["call"] / max(1, stats["n"]) - inside
    print(f"\nqmlir f32 decode step at context {ctx}: {total * 1e3:.2f} ms; compiled code {inside * 1e3:.2f} ms "
          f"({weight_bytes / inside / 1e9:.1f} GB/s over its {weight_bytes / 1e6:.0f} MB of inputs); qmlir's "
          f"argument checks and packing {packing * 1e3:.3f} ms ({100 * packing / total:.1f}%); Dynamo guards, AOT "
          f"wrapper and the rest outside {1e3 * (total - inside - packing):.2f} ms ({100 * (total - inside - packing) / total:.1f}%)")
    return [{"group": "qmlir f32 decode step, split", "variant": "qmlir f32", "median_s": total,
             "speedup_vs_eager_f32": float("nan"), "compiled_code_s": inside, "qmlir_packing_s": packing,
             "outside_s": total - inside - packing, "input_bytes": weight_bytes}]


def _generate_rows(model, tok, rounds, qmlir_backend):
    """HF generate end to end: a 23-token prompt, 32 new tokens, greedy; eager and qmlir f32."""
    prompt = tok("The GNU General Public License is a free, copyleft license for software and other kinds of "
                 "works, written by", return_tensors="pt").input_ids[:, :23]

    def gen(m):
        return m.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                          cache_implementation="static", pad_token_id=tok.eos_token_id)
    def median_s():
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            gen(model)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    out = {}
    with torch.no_grad():
        ref = gen(model)
        out["eager f32"] = median_s()
        import qmlir  # the user's path: the prefill in chunks of 32, one graph for every prompt length
        restore = qmlir.compile_for_generate(model, backend=qmlir_backend("qmlir generate")).restore
        try:
            t0 = time.perf_counter()
            got = gen(model)
            first = time.perf_counter() - t0
            out["qmlir f32"] = median_s()
        finally:
            restore()
    same = torch.equal(ref, got)
    title = "SmolLM2-135M generate, 23-token prompt + 32 new tokens (HF generate, static cache)"
    print(f"\n{title}")
    rows = []
    for name, t in out.items():
        rows.append({"group": title, "variant": name, "median_s": t, "speedup_vs_eager_f32": out["eager f32"] / t,
                     "tokens_per_s": 32 / t, "first_call_s": first if name.startswith("qmlir") else None,
                     "tokens_equal_eager": same})
        print(f"  {name:26} {t:8.3f} s  {out['eager f32'] / t:11.2f}x  {32 / t:9.1f} tok/s"
              + (f"  (first generate {first:.1f} s; tokens {'equal' if same else 'differ from'} eager's)"
                 if name.startswith("qmlir") else ""), flush=True)
    return rows
