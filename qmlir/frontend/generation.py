"""Generation through qmlir with one compiled prefill for every prompt length.

qmlir compiles static shapes, so a forward of a new prompt length is a new graph. Under
`model.generate(..., cache_implementation="static")` the prompt is the only call whose length
varies: `compile_for_generate` replaces `model.forward` by a `ChunkedForward`, which feeds any
multi-token call with a static cache to the compiled forward in chunks of a fixed length, so the
prefill compiles once (one graph of `chunk` tokens) and the decode step once, whatever the
prompt. Causal attention over the cache makes the chunks give the prompt's own logits:

- full chunks go in order; each writes its keys and values at the cache's counter, then attends
  over every earlier position;
- a prompt of at least `chunk` tokens ends with the last `chunk` tokens again (the cache's
  counter moved back by `Cache.crop`): the positions computed twice are written twice with the
  same values, and no position past the prompt is written;
- a shorter prompt is padded to `chunk` tokens at its end; the pad positions are written into
  the cache past the prompt and the counter is moved back to the prompt's end, so the next
  token overwrites them before any query can see them (the static cache's mask hides positions
  past the query);
- the logits of each chunk's real positions are selected by a tensor `logits_to_keep` (the same
  graph for every chunk), and the call returns what the plain forward returns.

Calls it cannot chunk exactly (no static cache, a sliding-window layer, `inputs_embeds`, hidden
states or attentions asked for, a 2-D mask with padding, ...) go to the compiled forward as they
are, which compiles their length as before. Measured costs are in the README ("Generating text").
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

import torch

from qmlir.errors import QmlirError

DEFAULT_CHUNK = 32
_POSITIONAL = ("position_ids", "cache_position")  # one entry per token, along the last dimension
_CHUNKED = {"input_ids", "attention_mask", "logits_to_keep", *_POSITIONAL}  # the tensors a chunk cuts


class GenerationSetupError(QmlirError, ValueError):
    """compile_for_generate was given something it cannot set up."""


def _static_cache(kwargs: Dict[str, Any]):
    """The call's cache if it is a transformers StaticCache made only of full-attention static
    layers (no sliding window, no linear attention); else None."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return None
    try:
        from transformers.cache_utils import StaticCache, StaticLayer
    except ImportError:  # pragma: no cover - transformers is a dependency of every HF model
        return None
    if not isinstance(cache, StaticCache) or not cache.layers:
        return None
    if any(type(layer) is not StaticLayer for layer in cache.layers):
        return None
    return cache


def _cache_room(cache) -> int:
    return int(cache.layers[0].max_cache_len)


def _seen(cache) -> int:
    n = cache.get_seq_length()
    return int(n.item() if isinstance(n, torch.Tensor) else n)


def _plain_causal(mask: torch.Tensor, seen: int) -> bool:
    """True if a 4-D mask [b, h, n, kv] (bool: True attends; float: 0 attends) lets query i see
    exactly the cache positions 0 .. seen + i, as the model's own mask for a static cache does
    (transformers passes such a mask for some prompt lengths and none for others)."""
    allowed = mask if mask.dtype == torch.bool else mask == 0
    n, kv = mask.shape[-2], mask.shape[-1]
    causal = torch.arange(kv, device=mask.device)[None, :] <= (seen + torch.arange(n, device=mask.device))[:, None]
    return bool((allowed == causal).all())


class ChunkedForward:
    """`model.forward` for generation: multi-token calls with a static cache go through
    `compiled` in chunks of `chunk` tokens (one graph for every prompt length); other calls go
    to `compiled` as they are. `calls` counts the compiled forward's calls by kind (tests and
    benchmarks read it)."""

    def __init__(self, model: torch.nn.Module, eager_forward: Callable, compiled: Callable, chunk: int,
                 skip_guards: bool = False):
        self.model = model
        self.eager_forward = eager_forward
        self.compiled = compiled
        self.chunk = chunk
        self.skip_guards = skip_guards
        self.compiles = 0  # graphs the backend was handed (counted by compile_for_generate's wrapper)
        self._repeat = None  # the key of the last step that ran every guard and compiled nothing
        self.calls = {"chunk": 0, "whole": 0, "unguarded": 0}
        functools.update_wrapper(self, eager_forward)  # generate reads the signature (logits_to_keep)

    # -- the plan ---------------------------------------------------------------------------
    def _chunkable(self, args, kwargs) -> Optional[tuple]:
        if args or kwargs.get("inputs_embeds") is not None:
            return None
        ids = kwargs.get("input_ids")
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] <= 1:
            return None
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions") or kwargs.get("labels") is not None:
            return None
        if kwargs.get("use_cache") is False:
            return None
        cache = _static_cache(kwargs)
        if cache is None:
            return None
        keep = kwargs.get("logits_to_keep", 0)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            return None
        b, n = ids.shape
        mask = kwargs.get("attention_mask")
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                return None
            if mask.dim() == 2:  # generate's own masks are 4-D; a 2-D one of ones masks nothing
                if not bool(mask.all()):
                    return None
            elif mask.dim() != 4 or mask.shape[0] != b or mask.shape[2] != n:
                return None
        for name in _POSITIONAL:
            positions = kwargs.get(name)
            if positions is not None and (not isinstance(positions, torch.Tensor) or positions.shape[-1] != n):
                return None
        # any other tensor (token_type_ids, ...) has no known way to be cut into chunks
        if any(isinstance(v, torch.Tensor) and k not in _CHUNKED for k, v in kwargs.items()):
            return None
        seen = _seen(cache)
        where = kwargs.get("cache_position")
        if where is not None and not torch.equal(where.cpu(), torch.arange(seen, seen + n)):
            return None  # positions other than the cache's own count: not a plain continuation
        room = _cache_room(cache)
        if n < self.chunk and seen + self.chunk > room:
            return None  # no room for the padded chunk: this length compiles on its own
        if seen + n > room:
            return None  # the plain forward raises its own error
        return cache, keep, seen

    def __call__(self, *args, **kwargs):
        plan = self._chunkable(args, kwargs)
        if plan is not None:
            self._repeat = None  # a new prompt: the next decode step runs Dynamo's guards again
            return self._chunked(kwargs, *plan)
        self.calls["whole"] += 1
        key = self._step_key(args, kwargs) if self.skip_guards else None
        if key is not None and key == self._repeat:
            try:
                with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                    out = self.compiled(*args, **kwargs)
                self.calls["unguarded"] += 1
                return out
            except RuntimeError as e:
                # Dynamo refuses to compile under the stance (raised before the graph runs:
                # nothing was written): another model's graphs of the same forward code are
                # among its entries. Run every guard, and stop skipping them in this generate.
                if "skip_guard_eval_unsafe" not in str(e):
                    raise
                self._repeat = None
                return self.compiled(*args, **kwargs)
        compiles = self.compiles
        out = self.compiled(*args, **kwargs)
        # a step that compiled nothing under every guard: its exact repeats may skip them
        self._repeat = key if key is not None and self.compiles == compiles else None
        return out

    def _step_key(self, args, kwargs) -> Optional[tuple]:
        """What a decode step of one generate holds fixed: the tensors' shapes, dtypes and
        layouts, every other argument by value (the cache by identity), grad and inference mode,
        and the model's mode. None for calls that are not one-token steps over a static cache."""
        ids = kwargs.get("input_ids")
        if args or not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] != 1:
            return None
        cache = _static_cache(kwargs)
        if cache is None:
            return None
        key = [torch.is_grad_enabled(), torch.is_inference_mode_enabled(), self.model.training]
        for name in sorted(kwargs):
            v = kwargs[name]
            if isinstance(v, torch.Tensor):
                key.append((name, tuple(v.shape), v.stride(), v.dtype, v.device, v.requires_grad))
            elif v is cache:
                key.append((name, id(cache)))
            elif v is None or isinstance(v, (bool, int, float, str)):
                key.append((name, type(v), v))
            else:
                return None
        return tuple(key)

    # -- one chunked call -------------------------------------------------------------------
    def _early_init(self, cache, ids: torch.Tensor) -> None:
        """Allocate the cache's tensors before the first chunk (as transformers does for its own
        chunked prefill), so the first chunk is the same graph as every later one."""
        if all(layer.is_initialized for layer in cache.layers):
            return
        shape = getattr(self.model, "_get_static_cache_init_shape", lambda: None)()
        if shape is None:
            return
        heads, head_dim = shape
        cache.early_initialization(batch_size=ids.shape[0], num_heads=heads, head_dim=head_dim,
                                   dtype=self.model.dtype, device=ids.device)

    def _chunked(self, kwargs: Dict[str, Any], cache, keep: int, seen: int):
        ids = kwargs["input_ids"]
        b, n = ids.shape
        c = self.chunk
        self._early_init(cache, ids)
        mask = kwargs.get("attention_mask")
        if mask is not None and (mask.dim() == 2 or _plain_causal(mask, seen)):
            mask = None  # masks nothing beyond causality: the model's own mask, one graph either way
        # (start, stop, rows): the chunk covers call positions [start, stop) (stop - start == c
        # after padding); `rows` are the call positions whose logits it gives
        spans = []
        if n < c:
            spans.append((0, n, range(0, n)))
        else:
            full = n // c
            spans += [(i * c, i * c + c, range(i * c, i * c + c)) for i in range(full)]
            if n % c:
                spans.append((n - c, n, range(full * c, n)))
        # logits: all positions (keep 0), or the last `keep`: only chunks holding them need rows
        wanted = range(0, n) if keep == 0 else range(max(0, n - keep), n)
        pieces: List[torch.Tensor] = []
        out = None
        for start, stop, rows in spans:
            at = seen + start
            now = _seen(cache)
            if now != at:  # the overlapping last chunk: back to its first position
                cache.crop(at - now)
            length = stop - start
            chunk_ids = ids[:, start:stop]
            pad = c - length
            if pad:
                chunk_ids = torch.cat([chunk_ids, chunk_ids[:, -1:].expand(b, pad)], dim=1)
            call = dict(kwargs)
            call["input_ids"] = chunk_ids.clone(memory_format=torch.contiguous_format)
            if mask is not None:
                m = mask[:, :, start:stop]
                if pad:  # pad rows see what the last real row sees: finite, and never read back
                    m = torch.cat([m, m[:, :, -1:].expand(-1, -1, pad, -1)], dim=2)
                call["attention_mask"] = m.clone(memory_format=torch.contiguous_format)
            for name in _POSITIONAL:  # position_ids, cache_position: cut, and continued over the pad
                if kwargs.get(name) is not None:
                    p = kwargs[name][..., start:stop]
                    if pad:
                        p = torch.cat([p, p[..., -1:] + torch.arange(1, pad + 1, dtype=p.dtype, device=p.device)], dim=-1)
                    call[name] = p.clone(memory_format=torch.contiguous_format)
            take = [r - start for r in rows if r in wanted]
            # one graph for every chunk: one row (generate's logits_to_keep=1) or all of them
            index = [take[-1] if take else length - 1] if keep == 1 else list(range(c))
            call["logits_to_keep"] = torch.tensor(index, dtype=torch.long, device=ids.device)
            self.calls["chunk"] += 1
            out = self.compiled(**call)
            if take:  # the rows asked for: all of them, or (a padded or overlapping chunk) some
                pieces.append(out.logits if len(take) == len(index) else out.logits[:, take])
            if pad:
                cache.crop(-pad)
        out.logits = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
        return out


def compile_for_generate(model: torch.nn.Module, chunk: int = DEFAULT_CHUNK, max_cache_len: Optional[int] = None,
                         backend: Optional[Callable] = None, skip_guards: bool = False,
                         **backend_options) -> ChunkedForward:
    """Compile `model.forward` with the qmlir backend for `model.generate(...,
    cache_implementation="static")`: the prefill compiles once for every prompt length (chunks of
    `chunk` tokens) and the decode step once.

    skip_guards: opt-in. From the second decode step of each generate on, a step whose
        arguments match the previous step's exactly (see ChunkedForward._step_key) runs without
        Dynamo's guard evaluation (torch.compiler.set_stance(skip_guard_eval_unsafe=True)). The
        first step of each generate, and any step that differs, runs every guard; qmlir's
        runtime still checks every tensor's shape and dtype. Measured gain on SmolLM2 f32: about
        0.6 ms of a 27 ms step, within noise. Off by default: with several models compiled from
        the same forward code (make demo's presets) Dynamo's entries are shared, and the
        stance's reduced guards are not shown to pick the right one (a refused recompile is
        caught and retried with every guard).

    max_cache_len: the static cache's length for every generate (transformers'
        `generation_config.max_cache_len`): the cache's shape is part of both graphs, so a fixed
        length keeps them from compiling again when prompt + max_new_tokens grows.
    backend: a configured qmlir backend (qmlir.backend(...)); else one is made of backend_options
        (strict, target, passes, on_compile, bounds_checks).
    Returns the ChunkedForward now at `model.forward`; `.restore()` puts the eager forward back.
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 2:
        raise GenerationSetupError(f"chunk={chunk!r}: expected an int of at least 2 tokens")
    if max_cache_len is not None and (not isinstance(max_cache_len, int) or max_cache_len < chunk):
        raise GenerationSetupError(f"max_cache_len={max_cache_len!r}: expected an int of at least the chunk ({chunk})")
    if not hasattr(model, "generate"):
        raise GenerationSetupError(f"{type(model).__name__} has no generate(): expected a transformers causal LM")
    if backend is not None and backend_options:
        raise GenerationSetupError("pass either backend or backend options, not both")
    if backend is None:
        from qmlir.frontend.dynamo_backend import backend as make_backend
        backend = make_backend(**backend_options)
    eager_forward = model.forward
    if isinstance(eager_forward, ChunkedForward):
        eager_forward = eager_forward.eager_forward
    wrapper = None

    def counted(gm, example_inputs):
        wrapper.compiles += 1
        return backend(gm, example_inputs)

    # dynamic=False: the chunk and the decode step are two static graphs, never one symbolic one
    compiled = torch.compile(eager_forward, backend=counted, dynamic=False)
    wrapper = ChunkedForward(model, eager_forward, compiled, chunk, skip_guards=bool(skip_guards))
    had_own = "forward" in vars(model)  # an instance attribute (an earlier wrapper) or the class's method

    def restore() -> None:
        if had_own:
            model.forward = eager_forward
        else:
            vars(model).pop("forward", None)

    wrapper.restore = restore
    model.forward = wrapper
    if max_cache_len is not None:
        model.generation_config.max_cache_len = max_cache_len
    return wrapper
