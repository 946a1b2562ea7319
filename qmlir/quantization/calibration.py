"""Calibration: observe the input activations of every linear layer to quantize.

Observers are forward pre-hooks on the `nn.Linear` modules, not nodes in an FX graph: module
names are what users write in `skip` patterns and what errors should name; hooks see every
call of a layer with any calling convention (HF models' kwargs, caches), and run eagerly on
any iterable of inputs without a capture that could graph-break. Per layer they record the
tensor min/max, the per-input-channel min/max/absmax (SmoothQuant and outlier channels), a
bounded random sample of |x| (percentile calibration), and a bounded sample of input rows
(SmoothQuant's "auto" search scores candidate scales on them).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import torch

from qmlir.errors import QmlirError

MAX_SAMPLES = 1 << 20
MAX_ROWS = 256


class _BatchDone(Exception):
    """Raised by the last observed layer of a batch: the rest of the forward is not needed."""


class CalibrationError(QmlirError, ValueError):
    """Calibration data that cannot calibrate: empty, or NaN/Inf in an activation."""


def _pick(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct indices of range(n), at random (all of them, in order, when k == n)."""
    return torch.randperm(n, generator=gen)[:k]


class FoldStats:
    """Per-channel min/max/mean |x| and a bounded row sample of some calibration batches (one
    fold of them, or several merged)."""

    def __init__(self, max_rows: int = MAX_ROWS):
        self.max_rows = max_rows
        self.channel_min = self.channel_max = self.channel_abssum = None
        self.rows_seen = 0
        self._rows: List[torch.Tensor] = []
        self._n_rows = 0

    def add(self, x: torch.Tensor, gen: torch.Generator) -> None:
        cmin, cmax = x.amin(dim=0), x.amax(dim=0)
        if self.channel_min is None:
            self.channel_min, self.channel_max = cmin, cmax
            self.channel_abssum = torch.zeros_like(cmin, dtype=torch.float64)
        else:
            self.channel_min = torch.minimum(self.channel_min, cmin)
            self.channel_max = torch.maximum(self.channel_max, cmax)
        self.channel_abssum = self.channel_abssum + x.abs().sum(dim=0, dtype=torch.float64)
        self.rows_seen += x.shape[0]
        if self._n_rows < self.max_rows:
            take = min(x.shape[0], self.max_rows - self._n_rows)
            self._rows.append(x.clone() if take == x.shape[0] else x[_pick(x.shape[0], take, gen)].clone())
            self._n_rows += take

    @staticmethod
    def merged(parts: List["FoldStats"]) -> "FoldStats":
        out = FoldStats(sum(p.max_rows for p in parts))
        for p in parts:
            if p.channel_min is None:
                continue
            if out.channel_min is None:
                out.channel_min, out.channel_max, out.channel_abssum = p.channel_min, p.channel_max, p.channel_abssum
            else:
                out.channel_min = torch.minimum(out.channel_min, p.channel_min)
                out.channel_max = torch.maximum(out.channel_max, p.channel_max)
                out.channel_abssum = out.channel_abssum + p.channel_abssum
            out.rows_seen += p.rows_seen
            out._rows += p._rows
            out._n_rows += p._n_rows
        return out

    @property
    def channel_absmean(self) -> torch.Tensor:
        return (self.channel_abssum / max(self.rows_seen, 1)).to(torch.float32)

    @property
    def channel_absmax(self) -> torch.Tensor:
        return torch.maximum(self.channel_min.abs(), self.channel_max.abs())

    def rows(self) -> torch.Tensor:
        return torch.cat(self._rows)


class ActivationObserver:
    """Running statistics of one layer's input activations (the last dim is the channel).

    folds > 0: the statistics are also kept per fold of the calibration batches (batch i in
    fold i % folds), so that a search can fit on some folds and score on the others
    (`fold_split`)."""

    def __init__(self, name: str, seed: int = 0, hessian: bool = False, sink_weight: float = 1.0,
                 folds: int = 0):
        self.name = name
        self.folds = [FoldStats(MAX_ROWS // folds) for _ in range(folds)]
        self.xtx = None if not hessian else 0  # sum of x^T x (GPTQ), when asked for, in f64
        self.sink_weight = sink_weight  # weight of position 0 of each sequence in xtx
        self.calls = 0
        self.min = self.max = None
        self.total = FoldStats(MAX_ROWS)  # per-channel statistics and rows of every call
        self._samples: List[torch.Tensor] = []
        self._n_samples = 0
        self._gen = torch.Generator().manual_seed(seed)

    def observe(self, x: torch.Tensor, shared: Optional[dict] = None) -> None:
        """shared: a dict the layers of one calibration share, so that layers reading the same
        input tensor (q/k/v, gate/up) compute its x^T x once."""
        given = x
        first = x[..., 0, :] if self.xtx is not None and x.dim() >= 3 and self.sink_weight != 1.0 else None
        x = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
        if x.numel() == 0:
            return
        if not torch.isfinite(x).all():
            bad = "NaN" if torch.isnan(x).any() else "Inf"
            raise CalibrationError(f"calibration: {bad} in the input of layer '{self.name}' "
                                   f"(call {self.calls + 1}); calibration data must give finite activations")
        self.calls += 1
        if self.xtx is not None:
            if shared is not None and shared.get("x") is given:
                inc = shared["xtx"]
            else:
                inc = (x.t() @ x).to(torch.float64)
                if first is not None:
                    f = first.detach().reshape(-1, x.shape[-1]).to(torch.float32)
                    inc += (self.sink_weight - 1.0) * (f.t() @ f).to(torch.float64)
                if shared is not None:
                    shared.update(x=given, xtx=inc)
            self.xtx = self.xtx + inc
        if self.folds:
            self.folds[shared["fold"]].add(x, self._gen)
        if self._n_samples < MAX_SAMPLES:
            flat = x.abs().reshape(-1)
            take = min(flat.numel(), MAX_SAMPLES - self._n_samples, 1 << 18)
            self._samples.append(flat if take == flat.numel() else flat[_pick(flat.numel(), take, self._gen)])
            self._n_samples += take
        self.total.add(x, self._gen)
        self.min, self.max = float(self.channel_min.min()), float(self.channel_max.max())

    @property
    def channel_min(self) -> Optional[torch.Tensor]:
        return self.total.channel_min

    @property
    def channel_max(self) -> Optional[torch.Tensor]:
        return self.total.channel_max

    @property
    def channel_abssum(self) -> Optional[torch.Tensor]:
        return self.total.channel_abssum

    @property
    def rows_seen(self) -> int:
        return self.total.rows_seen

    @property
    def channel_absmean(self) -> torch.Tensor:
        return self.total.channel_absmean

    @property
    def channel_absmax(self) -> torch.Tensor:
        return self.total.channel_absmax

    def rows(self) -> torch.Tensor:
        """A sample of input rows [R, K] (R <= 256)."""
        return self.total.rows()

    def fold_split(self, f: int) -> tuple:
        """(statistics of every fold but `f`, the row sample of fold `f`)."""
        return FoldStats.merged([p for i, p in enumerate(self.folds) if i != f]), self.folds[f].rows()

    def percentile(self, q: float, exclude: Optional[torch.Tensor] = None) -> float:
        """The q-th percentile of |x| over the sample (optionally leaving out some channels)."""
        sample = torch.cat(self._samples)
        if exclude is not None and exclude.numel():
            # samples are flattened [rows, K]: recompute from the row sample without those channels
            rows = self.rows().clone()
            rows[:, exclude] = 0
            sample = rows.abs().reshape(-1)
        return float(torch.quantile(sample[:1 << 24].to(torch.float32), q / 100.0))


def call_model(model: torch.nn.Module, item):
    """`model` on one calibration item: a dict of keyword arguments, a tuple/list of positional
    ones, or a single input."""
    if isinstance(item, dict):
        return model(**item)
    if isinstance(item, (tuple, list)):
        return model(*item)
    return model(item)


def calibrate(model: torch.nn.Module, data: Iterable, layers: Dict[str, torch.nn.Module],
              progress: bool = True, seed: int = 0, hessian: bool = False,
              sink_weight: float = 1.0, folds: int = 0) -> Dict[str, ActivationObserver]:
    """Run `model` on every item of `data` (a tensor, a tuple of positional args, or a dict of
    keyword args) under no_grad, observing the inputs of `layers` (name -> module); hessian:
    also sum x^T x per layer (for GPTQ), with the first position of every sequence (inputs of
    rank >= 3: [..., T, K]) counted `sink_weight` times; folds: also keep statistics per fold of
    the batches (batch i in fold i % folds)."""
    from tqdm.auto import tqdm

    observers = {name: ActivationObserver(name, seed, hessian, sink_weight, folds) for name in layers}
    shared: dict = {}
    # After the first batch has shown that every observed layer runs once per batch, a batch
    # stops as soon as the last of them has run: what follows (an LM's head over the whole
    # vocabulary, a fifth of SmolLM2's forward) is not computed. (The last layer itself runs, so
    # a batch the model rejects is still rejected.)
    calls = {name: 0 for name in layers}
    state = {"once": False, "seen": set()}

    def before(module, args, _n):
        observers[_n].observe(args[0], shared)
        if not state["once"]:
            calls[_n] += 1
        else:
            state["seen"].add(_n)

    def after(module, args, out):
        if state["once"] and len(state["seen"]) == len(layers):
            raise _BatchDone

    handles = [mod.register_forward_pre_hook(lambda m, args, _n=name: before(m, args, _n))
               for name, mod in layers.items()]
    handles += [mod.register_forward_hook(after) for mod in layers.values()]
    try:
        total = len(data) if hasattr(data, "__len__") else None
        n = 0
        with torch.no_grad():
            for item in tqdm(data, total=total, desc="qmlir calibration", unit="batch", disable=not progress):
                shared["fold"] = n % folds if folds else None
                state["seen"] = set()
                try:
                    call_model(model, item)
                except _BatchDone:
                    pass
                except CalibrationError:
                    raise
                except (TypeError, ValueError, RuntimeError, AttributeError, IndexError, KeyError) as e:
                    first = str(e).splitlines()[0] if str(e) else ""
                    raise CalibrationError(f"calibration batch {n}: the model rejected it ({type(e).__name__}: "
                                           f"{first}); give inputs the model takes (tensors, tuples of "
                                           "arguments or dicts of keyword arguments)") from None
                if n == 0:
                    state["once"] = all(c == 1 for c in calls.values())
                n += 1
    finally:
        shared.clear()
        for h in handles:
            h.remove()
    if n == 0:
        raise CalibrationError("calibration data is empty: give at least one input batch")
    unseen = [name for name, o in observers.items() if o.calls == 0]
    if unseen:
        raise CalibrationError(f"calibration never ran layer(s) {', '.join(unseen[:5])}"
                               f"{' ...' if len(unseen) > 5 else ''}: their activations cannot be calibrated")
    return observers


def validate_calibration(data, finite: bool = True) -> list:
    """The calibration batches as a list, checked before anything runs: CalibrationError for no
    batches, a batch that is not a tensor, tuple/list or dict, or (`finite`) float values that
    are NaN/Inf."""
    if isinstance(data, (torch.Tensor, dict)):
        data = [data]
    try:
        batches = list(data)
    except TypeError:
        raise CalibrationError(f"calibration data must be an iterable of model inputs, got "
                               f"{type(data).__name__}") from None
    if not batches:
        raise CalibrationError("calibration data is empty: give at least one input batch")
    for i, item in enumerate(batches):
        if isinstance(item, dict):
            values = list(item.values())
        elif isinstance(item, (tuple, list)):
            values = list(item)
        elif isinstance(item, torch.Tensor):
            values = [item]
        else:
            raise CalibrationError(f"calibration batch {i} is a {type(item).__name__}: give tensors, tuples "
                                   "of arguments or dicts of keyword arguments")
        for v in values:
            if finite and isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise CalibrationError(f"calibration batch {i} has NaN or Inf values")
    return batches
