"""Perplexity of causal language models on token windows: how quantized models are scored."""
from __future__ import annotations

import math
from typing import Callable, List

import torch


def token_windows(tokenizer, text: str, n_tokens: int, window: int) -> List[torch.Tensor]:
    """The first `n_tokens` tokens of `text` as [1, window] id tensors (n_tokens a multiple of window)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0][:n_tokens]
    if ids.numel() < n_tokens:
        raise ValueError(f"text has {ids.numel()} tokens, fewer than {n_tokens}")
    return first_windows(ids, -(-n_tokens // window), window)


def spread_windows(tokenizer, text: str, n_windows: int, window: int) -> List[torch.Tensor]:
    """`n_windows` [1, window] id tensors taken at even strides over the whole of `text` (varied
    calibration data from a long corpus, rather than its first pages)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if ids.numel() < n_windows * window:
        raise ValueError(f"text has {ids.numel()} tokens, fewer than {n_windows} x {window}")
    return spaced_windows(ids, n_windows, window)


def first_windows(ids: torch.Tensor, n_windows: int, window: int) -> List[torch.Tensor]:
    """The first `n_windows` [1, window] windows of the 1-D token ids `ids`, in order (the
    last may be shorter if `ids` ends inside it)."""
    return [ids[i * window:(i + 1) * window][None] for i in range(n_windows)]


def spaced_windows(ids: torch.Tensor, n_windows: int, window: int) -> List[torch.Tensor]:
    """`n_windows` [1, window] windows of the 1-D token ids `ids` at even strides over all of it
    (`ids` holds at least n_windows * window tokens)."""
    stride = (ids.numel() - window) // n_windows
    return [ids[i * stride:i * stride + window][None] for i in range(n_windows)]


def nll(logits: torch.Tensor, ids: torch.Tensor) -> tuple:
    """(sum of next-token negative log-likelihoods, count) of one window."""
    logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
    picked = logp.gather(1, ids[0, 1:, None])
    return float(-picked.sum()), picked.numel()


def perplexity(forward: Callable[[torch.Tensor], torch.Tensor], windows: List[torch.Tensor]) -> float:
    """exp(mean NLL) over all windows; `forward(ids)` returns logits [1, T, vocab]."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in windows:
            s, n = nll(forward(ids), ids)
            total, count = total + s, count + n
    return math.exp(total / count)


class GenerationTimer:
    """A Hugging Face streamer (`model.generate(..., streamer=GenerationTimer())`) that times a
    generation: the first `put` is the prompt, each later one a new token. After generate:
    `ttft_s` (time to the first new token: the prefill), `decode_tokens_per_s` (the tokens after
    it), `tokens` (the new token ids). `on_token(ids)` is called with each new token (to stream)."""

    def __init__(self, on_token: Callable[[torch.Tensor], None] | None = None):
        self.on_token = on_token
        self.start = None
        self.times: List[float] = []
        self.tokens: List[int] = []

    def put(self, value: torch.Tensor) -> None:
        import time
        now = time.perf_counter()
        if self.start is None:  # the prompt, handed over before the prefill runs
            self.start = now
            return
        self.times.append(now)
        self.tokens += [int(t) for t in value.reshape(-1)]
        if self.on_token is not None:
            self.on_token(value)

    def end(self) -> None:
        pass

    @property
    def ttft_s(self) -> float:
        if self.start is None or not self.times:
            raise ValueError("no token was generated")
        return self.times[0] - self.start

    @property
    def decode_tokens_per_s(self) -> float:
        if len(self.times) < 2:
            raise ValueError("fewer than two new tokens: no decode rate")
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])
