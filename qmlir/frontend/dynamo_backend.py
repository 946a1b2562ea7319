"""The TorchDynamo backend: AOT autograd with core-ATen decompositions and functionalization
gives an inference graph with parameters as inputs; qmlir imports and compiles it. A graph it
cannot compile runs eagerly after one warning naming every unsupported op (strict: raises)."""
from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import torch
from torch._decomp import core_aten_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from qmlir.errors import QmlirError, UnsupportedOpError
from qmlir.frontend.graph_rewrites import fold_repeated_kv, scale_scores_not_keys
from qmlir.frontend.importer import ImportedGraph, import_graph
from qmlir.ir.constants import is_frozen
from qmlir.passes.pipeline import Pipeline
from qmlir.target import Target, as_target, build

_WARNED: set = set()


def _constants(gm: torch.fx.GraphModule, fakes: List[torch.Tensor], frozen: Dict[int, torch.Tensor]):
    """Compile-time constants by input position of the AOT graph. Dynamo hands the backend the
    real tensors; AOT autograd's inference graph takes the same inputs in the same order (checked
    here by shape and dtype; if it ever differs, no constants are known and a lowering that
    needs one says so)."""
    if not frozen:
        return {}
    if len(fakes) < max(frozen) + 1 or any(tuple(fakes[i].shape) != tuple(t.shape) or fakes[i].dtype != t.dtype
                                           for i, t in frozen.items()):
        return {}
    return dict(frozen)


class QmlirFallbackWarning(UserWarning):
    """A graph runs eagerly instead of through qmlir."""


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, QmlirFallbackWarning, stacklevel=3)


@dataclass
class CompiledGraph:
    """What the backend made of one captured graph: its IR and its compiled function."""

    graph: ImportedGraph
    function: Callable  # the loaded function (qmlir.runtime: CpuFunction, CudaFunction)
    import_seconds: float


def backend(strict: bool = False, on_compile: Optional[Callable[[CompiledGraph], None]] = None,
            on_import: Optional[Callable[[ImportedGraph], None]] = None, passes: Optional[str] = None,
            target: Union[Target, str, None] = None, bounds_checks: bool = True) -> Callable:
    """A configured backend: `torch.compile(model, backend=qmlir.backend(strict=True))`.

    passes: a qmlir-opt pipeline run on each imported graph before lowering, e.g.
        "qmlir-mixed-precision{type=bf16}" (the same registry and parser as qmlir-opt).
    on_compile: called with each compiled graph (its IR and timings).
    on_import: graphs are only imported (handed to it) and then run eagerly: nothing is lowered.
    target: a qmlir.Target or its text: "cpu" (the running CPU; the default) or "cuda"
        (NVVM/PTX kernels, CUDA tensors in and out), e.g. qmlir.Target.cpu(features=()).
    bounds_checks: an index read from data (embedding, gather, index ...) out of range raises
        qmlir.IndexOutOfRangeError (an IndexError) as eager does; False skips the checks for
        inputs known to be in range (reads stay in bounds; a bad index then gives a wrong value).
    """
    target = as_target(target)
    if target.kind == "cuda" and on_import is None:
        from qmlir.runtime.cuda import cuda_device
        cuda_device()  # no GPU: CudaUnavailableError now, not a silent eager run at every call
    # a malformed pipeline or an unknown pass or option fails here, at once
    pipeline = Pipeline.parse(passes) if passes else None

    def fw_compiler(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor], frozen: Dict[int, torch.Tensor]):
        t0 = time.perf_counter()
        fold_repeated_kv(gm)  # grouped-query attention reads its key/value heads once
        scale_scores_not_keys(gm)  # and reads the keys in place, unscaled
        try:
            graph = import_graph(gm, constants=_constants(gm, example_inputs, frozen), bounds_checks=bounds_checks)
        except UnsupportedOpError as e:
            if strict:
                raise
            _warn_once(f"qmlir: running this graph eagerly. {e}")
            return make_boxed_func(gm.forward)
        except Exception as e:  # a bug in a lowering: warn and run eagerly (strict: raise)
            if strict:
                raise
            _warn_once(f"qmlir: running this graph eagerly: importing it failed "
                       f"({type(e).__name__}: {e}); please report it")
            return make_boxed_func(gm.forward)
        if pipeline is not None:
            pipeline.run(graph.module, "passes=")
        if on_import is not None:
            on_import(graph)
            return make_boxed_func(gm.forward)
        t1 = time.perf_counter()
        try:
            fn = build(graph.mlir, target, entry=graph.func_name, specs=(graph.inputs, graph.outputs))
        except Exception as e:  # a lowering failure must not take the user's program down
            if strict:
                raise
            _warn_once(f"qmlir: running this graph eagerly: compiling it failed "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); please report it")
            return make_boxed_func(gm.forward)
        if on_compile is not None:
            on_compile(CompiledGraph(graph, fn, t1 - t0))
        tensors = graph.tensor_inputs  # a specialized graph's size arguments are not passed

        def run(args):
            return fn(*[args[i] for i in tensors]) if tensors is not None else fn(*args)

        run._boxed_call = True
        return run

    decompositions = core_aten_decompositions()

    def qmlir_backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]):
        try:
            return _backend(gm, example_inputs)
        except QmlirError as e:  # reaches the caller as itself, not as Dynamo's BackendCompilerFailed
            raise _through_dynamo(e) from e.__cause__

    def _backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]):
        if torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in example_inputs):
            message = ("qmlir compiles inference graphs; this graph needs gradients and runs eagerly "
                       "(wrap the call in torch.no_grad() or torch.inference_mode())")
            if strict:
                raise UnsupportedOpError([("autograd", message)])
            _warn_once(message)
            return gm.forward
        if _is_dynamic(example_inputs):
            return _Specializing(gm, lambda args: qmlir_backend(gm, args))
        # read now: inside AOT autograd's compiler, fake-tensor mode forbids touching real data
        frozen = {i: t.detach().cpu().clone() for i, t in enumerate(example_inputs) if is_frozen(t)}
        # keep_inference_input_mutations: a graph that writes into an input (a KV cache's
        # index_copy_) ends with aten.copy_(input, new value), which qmlir lowers to a write in
        # place into the caller's tensor, instead of AOT autograd copying every output back
        compile_with_aot = aot_autograd(fw_compiler=functools.partial(fw_compiler, frozen=frozen),
                                        decompositions=decompositions, keep_inference_input_mutations=True)
        compiled = compile_with_aot(gm, example_inputs)
        if not frozen:
            return compiled
        return _FrozenValues(sorted(frozen), example_inputs, compiled, lambda args: qmlir_backend(gm, args))

    return qmlir_backend


_THROUGH: Dict[type, type] = {}


def _through_dynamo(e: QmlirError) -> QmlirError:
    """`e` as an instance of a subclass of its own class that Dynamo re-raises unwrapped.

    Dynamo wraps whatever a backend raises in BackendCompilerFailed, except its own
    ShortenTraceback family, which it re-raises as is. The subclass adds that base and nothing
    else (same name, module, message and attributes), so `except qmlir.UnsupportedOpError`
    catches what `torch.compile(backend=qmlir.backend(strict=True))` raises."""
    from torch._dynamo.exc import ShortenTraceback
    if isinstance(e, ShortenTraceback):
        return e
    cls = type(e)
    sub = _THROUGH.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls, ShortenTraceback), {"__module__": cls.__module__,
                                                         "__qualname__": cls.__qualname__,
                                                         "__doc__": cls.__doc__})
        _THROUGH[cls] = sub
    out = sub.__new__(sub, *e.args)
    out.__dict__.update(e.__dict__)
    out.first_useful_frame = None
    out._torch_dynamo_tracer_output, out.frame_exec_strategy = None, None  # TorchDynamoException's
    return out.with_traceback(e.__traceback__)


def _stamp(t: torch.Tensor) -> tuple:
    try:
        return id(t), t._version
    except RuntimeError:  # an inference-mode tensor has no version counter
        return id(t), -1


class _FrozenValues:
    """A compiled graph whose frozen inputs (a quantized layer's scales) are constants in its
    code, called only with those values. Dynamo does not guard on buffer values, so another
    module with the same shapes (or a buffer changed in place) reaches the same compiled graph
    with other values: those are compared, and a graph is compiled for each set of values seen.
    The check per call is the identity and version counter of each frozen input."""

    def __init__(self, positions: List[int], example_inputs, compiled: Callable, compile_for: Callable):
        self.positions = positions
        self.compile_for = compile_for
        self.entries = [(self._values(example_inputs), compiled)]
        self._use(example_inputs, compiled)

    def _values(self, args) -> list:
        return [args[i].detach().clone() for i in self.positions]

    def _use(self, args, fn) -> None:
        self.held = [args[i] for i in self.positions]  # held: their ids stay theirs
        self.stamp = [_stamp(t) for t in self.held]
        self.fn = fn

    def __call__(self, *args):
        if [_stamp(args[i]) for i in self.positions] != self.stamp:
            for values, fn in self.entries:
                if all(v.shape == args[i].shape and torch.equal(v, args[i].detach())
                       for v, i in zip(values, self.positions)):
                    break
            else:
                fn = self.compile_for(list(args))  # the tensors themselves: they carry the frozen marks
                self.entries.append((self._values(args), fn))
            self._use(args, fn)
        return self.fn(*args)


def _is_dynamic(example_inputs) -> bool:
    """True when Dynamo hands over a graph with symbolic sizes (dynamic=True, or its automatic
    dynamic after a second shape): a size argument, or a tensor whose shape is symbolic."""
    return any(isinstance(e, torch.SymInt) or
               (isinstance(e, torch.Tensor) and any(not isinstance(d, int) for d in e.shape))
               for e in example_inputs)


class _Specializing:
    """A graph Dynamo captured with symbolic sizes, compiled by qmlir once per concrete shape at
    call time (qmlir compiles static shapes): each new combination of input shapes (and size
    arguments) is traced again by AOT autograd with those values, which makes every size a
    constant, and compiled; later calls with it reuse that. Dynamo itself does not recompile,
    so a model called with many lengths does not hit its recompile limit; each new length costs
    one qmlir compile (cached on disk across processes)."""

    def __init__(self, gm: torch.fx.GraphModule, compile_for: Callable):
        self.gm = gm
        self.compile_for = compile_for
        self.compiled: Dict[tuple, Callable] = {}

    def __call__(self, *args):
        key = tuple((tuple(a.shape), a.dtype, a.device.type) if isinstance(a, torch.Tensor) else int(a)
                    for a in args)
        fn = self.compiled.get(key)
        if fn is None:
            fn = self.compiled[key] = self.compile_for([a.detach() if isinstance(a, torch.Tensor) else a
                                                        for a in args])
        return fn(*args)


qmlir_backend = backend()
