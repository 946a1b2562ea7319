"""Generation with a KV cache through qmlir: `model.generate(..., cache_implementation="static")`
with the qmlir backend compiles the prefill and the decode step (strict: no fallback), writes
the cache in place, and gives eager's greedy tokens: exactly for f32 (random-weight Llama and
GPT-2, and SmolLM2 for 64 tokens), within a bound of their own eager reference for bf16 and
every quantized mode."""
import pytest
import torch

import qmlir
from qmlir import zoo


def tiny_llama(seed=0):
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return transformers.LlamaForCausalLM(cfg).eval()


def generate(model, ids, new_tokens, **kwargs):
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, cache_implementation="static",
                             output_logits=True, return_dict_in_generate=True, pad_token_id=0, **kwargs)
    return out.sequences[0, ids.shape[1]:], torch.cat(out.logits)


def compiled_generate(model, ids, new_tokens, **kwargs):
    """Generate with model.forward compiled by qmlir (strict); returns (tokens, logits, graphs)."""
    graphs = []
    eager_forward = model.forward
    model.forward = torch.compile(eager_forward, backend=qmlir.backend(strict=True, on_compile=graphs.append))
    try:
        tokens, logits = generate(model, ids, new_tokens, **kwargs)
    finally:
        model.forward = eager_forward
    return tokens, logits, graphs


@pytest.mark.parametrize("make", [tiny_llama, zoo.gpt2_random], ids=["llama", "gpt2"])
def test_f32_greedy_tokens_equal_eager(make):
    torch._dynamo.reset()
    model = make()
    ids = torch.randint(0, 256, (1, 11), generator=torch.Generator().manual_seed(3))
    ref_tokens, ref_logits = generate(model, ids, 16)
    tokens, logits, graphs = compiled_generate(model, ids, 16)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert len(graphs) == 2  # the prefill and the decode step, each compiled once
    decode = graphs[-1]
    assert decode.graph.mutated, "the decode step writes the KV cache in place"
    assert len(decode.function.mutated) == len(decode.graph.mutated)


MODES = [
    ("bf16", "bf16", 0.05),
    ("int8-weight-only", "int8-weight-only", 1e-3),
    ("int4-rtn", "int4-g128", 1e-3),
    ("int4-gptq", "int4-g128-gptq", 1e-3),
    ("w8a8-static", "w8a8-static", 1e-3),
    ("w8a8-dynamic", "w8a8-dynamic", 1e-3),
    ("w8a8-block32", "w8a8-block32", 1e-3),
    # int4 weights: a last-bit difference upstream (compiled softmax's exp) that flips one
    # activation's rounding moves an output by a whole 4-bit weight step
    ("w4a8-block32", "w4a8-block32", 1e-2),
    ("w8a8-outliers", "w8a8-outliers", 1e-3),
]


@pytest.mark.parametrize("name,preset,bound", MODES, ids=[m[0] for m in MODES])
def test_every_mode_generates_compiled(name, preset, bound):
    """Each mode's compiled generation against the same quantized model run eagerly: its
    logits step by step within `bound` (relative to their scale) while the tokens agree."""
    torch._dynamo.reset()
    model = tiny_llama()
    if preset == "w8a8-outliers":  # give the activations outlier channels for the split to take
        with torch.no_grad():
            model.model.embed_tokens.weight[:, 7] *= 40
    calib = [torch.randint(0, 256, (1, 32), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    q = qmlir.quantize(model, calib, preset)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(5))
    ref_tokens, ref_logits = generate(q, ids, 12)
    tokens, logits, graphs = compiled_generate(q, ids, 12)
    assert len(graphs) == 2
    same = int((tokens == ref_tokens).cumprod(0).sum())
    assert same >= 6, f"{name}: only {same} of 12 greedy tokens agree with eager"
    scale = ref_logits[:same].abs().max()
    err = (logits[:same] - ref_logits[:same]).abs().max() / scale
    assert err <= bound, f"{name}: max logit error {err:.2e} of their scale (bound {bound})"


@pytest.mark.heavy
def test_smollm2_f32_64_tokens_equal_eager():
    torch._dynamo.reset()
    model, tok = zoo.smollm2()
    ids = tok("The GNU General Public License is a free, copyleft license for", return_tensors="pt").input_ids
    ref_tokens, _ = generate(model, ids, 64)
    tokens, _, graphs = compiled_generate(model, ids, 64)
    assert len(graphs) == 2
    assert torch.equal(tokens, ref_tokens), (tok.decode(tokens), tok.decode(ref_tokens))


def test_new_prompt_lengths_compile_instead_of_falling_back():
    """Dynamo's automatic dynamic turns the second prompt length into a graph with symbolic
    sizes; qmlir compiles it once per concrete length (no eager fallback, no Dynamo recompile
    limit), and a length seen before reuses its compiled graphs."""
    import warnings
    from qmlir.frontend.dynamo_backend import QmlirFallbackWarning
    torch._dynamo.reset()
    model = tiny_llama()
    prompts = {n: torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 17, 100)}
    refs = {n: generate(model, ids, 6)[0] for n, ids in prompts.items()}
    graphs = []
    eager_forward = model.forward
    model.forward = torch.compile(eager_forward, backend=qmlir.backend(on_compile=graphs.append))  # dynamic=None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", QmlirFallbackWarning)
            counts = []
            for n in (5, 17, 100, 17):
                tokens, _ = generate(model, prompts[n], 6)
                assert torch.equal(tokens, refs[n]), n
                counts.append(len(graphs))
    finally:
        model.forward = eager_forward
    assert counts[-1] == counts[-2], "a prompt length seen before compiles nothing"
    assert counts[0] == 2 and counts[1] > counts[0] and counts[2] > counts[1]


def _prompts(lengths, vocab=256):
    """Random prompts that never hold token 0 (generate's pad_token_id here, which it would mask)."""
    return {n: torch.randint(1, vocab, (1, n), generator=torch.Generator().manual_seed(n)) for n in lengths}


def test_prompt_lengths_share_one_compiled_prefill():
    """qmlir.compile_for_generate: prompts of 5, 17 and 100 tokens (padded, one chunk plus an
    overlapping tail, six chunks plus a tail) run through one compiled prefill of 16 tokens and
    one decode step: two compiles in all, no fallback, eager's tokens and logits."""
    import warnings
    from qmlir.frontend.dynamo_backend import QmlirFallbackWarning
    torch._dynamo.reset()
    model = tiny_llama()
    prompts = _prompts((5, 17, 100, 16))
    refs = {n: generate(model, ids, 6, max_cache_len=128) for n, ids in prompts.items()}
    graphs = []
    forward = qmlir.compile_for_generate(model, chunk=16, max_cache_len=128, skip_guards=True,
                                         on_compile=graphs.append)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", QmlirFallbackWarning)
            for n in (5, 17, 100, 16):
                tokens, logits = generate(model, prompts[n], 6)
                assert torch.equal(tokens, refs[n][0]), n
                torch.testing.assert_close(logits, refs[n][1], rtol=1e-4, atol=1e-4)
    finally:
        forward.restore()
    assert len(graphs) == 2, [g.graph.inputs[0].shape for g in graphs]
    assert sorted(g.graph.inputs[0].shape for g in graphs) == [(1, 1), (1, 16)]
    assert forward.calls["chunk"] == 1 + 2 + 7 + 1  # 5: padded; 17: 16 + last 16; 100: 6 x 16 + last 16
    # five decode steps per generate: the first (and the very first, which compiled, and the one
    # after it) ran every guard; the exact repeats after it skipped Dynamo's guard evaluation
    assert forward.calls["whole"] == 4 * 5 and forward.calls["unguarded"] == 3 + 3 * 4
    assert model.forward is not forward


def test_chunked_forward_gives_the_plain_forwards_logits():
    """A direct forward through the chunked path (logits_to_keep 0: every position, and 3: the
    last three), and a batch of two with left padding (a real mask: its own graph), against the
    plain eager forward on an identical cache."""
    from transformers import StaticCache
    torch._dynamo.reset()
    model = tiny_llama()
    ids = _prompts((21,))[21]
    forward = qmlir.compile_for_generate(model, chunk=8, strict=True)
    try:
        for keep in (0, 3):
            extra = {"cache_position": torch.arange(21)} if keep else {}  # cut along with the tokens
            with torch.no_grad():
                ref = forward.eager_forward(input_ids=ids, cache=StaticCache(config=model.config, max_cache_len=40),
                                            use_cache=True, logits_to_keep=keep, **extra).logits
                cache = StaticCache(config=model.config, max_cache_len=40)
                out = model.forward(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=keep, **extra).logits
            assert out.shape == ref.shape == (1, 21 if keep == 0 else keep, 256)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
            assert int(cache.get_seq_length()) == 21  # the counter at the prompt's end, not past a chunk
        assert forward.calls == {"chunk": 6, "whole": 0, "unguarded": 0}
        with torch.no_grad():  # positions that do not continue the cache's count: not chunked
            model.forward(input_ids=ids, cache=StaticCache(config=model.config, max_cache_len=40), use_cache=True,
                          cache_position=torch.arange(2, 23))
        assert forward.calls["whole"] == 1
    finally:
        forward.restore()
    batch = torch.cat([_prompts((13,))[13], torch.cat([torch.zeros(1, 4, dtype=torch.long), ids[:, :9]], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    settings = dict(attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                    cache_implementation="static")
    with torch.no_grad():
        ref_tokens = model.generate(batch, **settings)
    forward = qmlir.compile_for_generate(model, chunk=8, strict=True)
    try:
        with torch.no_grad():
            tokens = model.generate(batch, **settings)
    finally:
        forward.restore()
    assert torch.equal(tokens, ref_tokens)
    assert forward.calls["chunk"] == 2 and forward.calls["whole"] == 3


def test_compile_for_generate_rejects_bad_settings():
    from qmlir.frontend.generation import GenerationSetupError
    model = tiny_llama()
    for kwargs, match in [({"chunk": 1}, "chunk=1"), ({"chunk": "32"}, "chunk='32'"),
                          ({"chunk": 16, "max_cache_len": 8}, "at least the chunk"),
                          ({"backend": qmlir.backend(), "strict": True}, "either backend")]:
        with pytest.raises(GenerationSetupError, match=match):
            qmlir.compile_for_generate(model, **kwargs)
    assert "forward" not in vars(model)  # nothing was installed
    with pytest.raises(GenerationSetupError, match="no generate"):
        qmlir.compile_for_generate(torch.nn.Linear(2, 2))


def test_generation_timer_records_the_new_tokens():
    from qmlir.evaluation import GenerationTimer
    model = tiny_llama()
    ids = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(1))
    seen = []
    timer = GenerationTimer(on_token=seen.append)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0,
                             cache_implementation="static", streamer=timer)
    assert timer.tokens == out[0, 7:].tolist() and len(seen) == 5
    assert timer.ttft_s > 0 and timer.decode_tokens_per_s > 0
    with pytest.raises(ValueError, match="no token"):
        GenerationTimer().ttft_s
