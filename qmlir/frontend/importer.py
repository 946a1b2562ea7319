"""FX graph -> MLIR importer.

Walks an ATen-level FX graph once, in order, and calls the lowering registered for
each node's overload. Values are tracked by FX node (never by name string); each op
carries the node's name and the model source line that produced it as its `loc`.
"""
from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch
import torch.fx
from mlir import ir
from mlir.dialects import func

from qmlir import dialect_ops  # noqa: F401  (registers every lowering)
from qmlir.dialect_ops import registry
from qmlir.ir.constants import dense_constant
from qmlir.errors import UnsupportedOp, UnsupportedOpError
from qmlir.ir.checks import CHECKS_ATTR
from qmlir.ir.specs import MUTATED_RESULTS_ATTR, TensorSpec
from qmlir.ir.types import SUPPORTED_DTYPES, tensor_type

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_TORCH_DIR = os.path.dirname(torch.__file__)

# Ops that exist only to check or describe; they produce no value.
_NO_VALUE = {torch.ops.aten._assert_tensor_metadata.default}


@dataclass
class ImportedGraph:
    module: ir.Module
    context: ir.Context
    func_name: str
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    aten_ops: frozenset = frozenset()  # names of the ATen overloads in the graph
    mutated: tuple = ()  # positions of the inputs the graph writes in place (its input mutations)
    # positions (among the graph's inputs) of those the function takes; None: all of them. A graph
    # specialized to concrete sizes keeps its size inputs (plain ints), unused: they are dropped.
    tensor_inputs: tuple | None = None

    @property
    def mlir(self) -> str:
        """The module as text (after any passes run on it), the key of the compile cache."""
        return str(self.module)


@dataclass
class ImportContext:
    """State one lowering may use: the graph, the module, and per-node values."""

    graph_module: torch.fx.GraphModule
    module: ir.Module
    values: Dict[torch.fx.Node, Any] = field(default_factory=dict)
    constants: Dict[torch.fx.Node, torch.Tensor] = field(default_factory=dict)
    bounds_checks: bool = True
    checks: List[tuple] = field(default_factory=list)  # (message template, tensor<2xi64> value)
    mutations: List[tuple] = field(default_factory=list)  # (input position, its new value): aten.copy_

    def add_check(self, node: torch.fx.Node, value: Any, detail: str) -> None:
        """A run-time check (qmlir/ir/checks.py) of `node`: `value` is its tensor<2xi64>
        [failures, a failing value]; `detail` says what failed, with `{index}` for the value.
        Dropped when the graph is imported with bounds_checks=False."""
        if self.bounds_checks:
            self.checks.append((f"{registry.op_name(node.target)} at node '{node.name}'{_where(node)}: {detail}",
                                value))

    def meta(self, node: torch.fx.Node) -> Any:
        return node.meta["val"]

    def constant_array(self, node: Any, what: str) -> "np.ndarray":
        """The NumPy value of an input known at compile time (a buffer marked as a compile-time
        constant, e.g. quantization scales); raises UnsupportedOp if it is not known."""
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        value = None
        if isinstance(node, torch.fx.Node) and node in self.constants:
            value = self.constants[node]
        elif isinstance(node, torch.fx.Node) and node.op == "get_attr":
            value = getattr(self.graph_module, node.target)
        if isinstance(value, torch.Tensor):
            with unset_fake_temporarily():  # AOT autograd compiles under fake-tensor mode
                return value.detach().to(torch.float64 if value.is_floating_point() else torch.int64).numpy()
        raise UnsupportedOp(node, f"{what} must be known at compile time (a buffer of a qmlir-quantized "
                                  "module); here it is a run-time value")


def _where(node: torch.fx.Node) -> str:
    """' (file.py:12)': the innermost model source frame of `node`, or ''."""
    trace = node.meta.get("stack_trace") or ""
    frames = [f for f in _FRAME.findall(trace) if not f[0].startswith(_TORCH_DIR)] or _FRAME.findall(trace)
    return f" ({os.path.basename(frames[-1][0])}:{frames[-1][1]})" if frames else ""


def node_location(node: torch.fx.Node) -> ir.Location:
    """`loc("name"("file":line:0))`: the node's name over the innermost model source frame."""
    trace = node.meta.get("stack_trace") or ""
    # the innermost frame of model code, not of torch's own modules (nn.Linear -> F.linear)
    frames = [f for f in _FRAME.findall(trace) if not f[0].startswith(_TORCH_DIR)] or _FRAME.findall(trace)
    base = ir.Location.file(frames[-1][0], int(frames[-1][1]), 0) if frames else ir.Location.unknown()
    return ir.Location.name(node.name, childLoc=base)


def _spec(node: torch.fx.Node, what: str) -> TensorSpec:
    val = node.meta.get("val")
    if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise UnsupportedOp(node, f"{what} is a symbolic size ({val}): the graph has dynamic shapes; "
                                  "qmlir compiles static shapes (torch.compile(..., dynamic=False))")
    if not isinstance(val, torch.Tensor):
        raise UnsupportedOp(node, f"{what} is not a tensor ({type(val).__name__}); qmlir compiles tensor graphs")
    if any(not isinstance(s, int) for s in val.shape):
        raise UnsupportedOp(node, f"{what} has a dynamic shape {tuple(val.shape)}; qmlir compiles static shapes "
                                  "(torch.compile(..., dynamic=False))")
    if val.dtype not in SUPPORTED_DTYPES:
        raise UnsupportedOp(node, f"{what} has unsupported dtype {val.dtype}")
    return TensorSpec(tuple(int(s) for s in val.shape), val.dtype)


def _map_args(arg: Any, values: Dict[torch.fx.Node, Any]) -> Any:
    if isinstance(arg, torch.fx.Node):
        return values[arg]
    if isinstance(arg, (list, tuple)):
        return type(arg)(_map_args(a, values) for a in arg)
    if isinstance(arg, dict):
        return {k: _map_args(v, values) for k, v in arg.items()}
    return arg


def _inputs_of(node: torch.fx.Node) -> List[torch.fx.Node]:
    return list(node.all_input_nodes)


def unsupported_ops(gm: torch.fx.GraphModule) -> List[tuple]:
    """(op, reason) for every node no lowering is registered for; cheap, builds no IR."""
    problems = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is not operator.getitem \
                and node.target not in _NO_VALUE and registry.lookup(node.target) is None:
            problems.append((registry.op_name(node.target), "no lowering registered"))
    return problems


def import_graph(gm: torch.fx.GraphModule, func_name: str = "forward",
                 constants: Dict[int, torch.Tensor] | None = None, bounds_checks: bool = True) -> ImportedGraph:
    """Import `gm` (an ATen-level, functional FX graph with static shapes) into a new MLIR module.

    constants: values of inputs known at compile time, by input position (the parameter hook
    of torch-mlir's importer): they stay function arguments, and lowerings that need a value
    at compile time (quantization scales into `!quant.uniform` types) read it from here.
    bounds_checks: data-dependent indices (embedding, gather, index ...) are checked at run time
    (an out-of-range one raises qmlir.IndexOutOfRangeError); False drops the checks, for inputs
    known to be in range (reads stay clamped in bounds, so a bad index gives a wrong value, never
    a read outside the tensor).
    Raises `UnsupportedOpError` listing every node that could not be lowered.
    """
    problems = unsupported_ops(gm)
    if problems:
        raise UnsupportedOpError(problems)
    context = ir.Context()
    with context, ir.Location.unknown():
        module = ir.Module.create()
        ctx = ImportContext(gm, module, bounds_checks=bounds_checks)
        all_placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        # an unused size argument (a graph specialized to concrete sizes) is not a function argument
        placeholders = [n for n in all_placeholders
                        if isinstance(n.meta.get("val"), torch.Tensor) or n.users]
        tensor_inputs = None if len(placeholders) == len(all_placeholders) else \
            tuple(i for i, n in enumerate(all_placeholders) if n in placeholders)
        output_node = next(n for n in gm.graph.nodes if n.op == "output")
        try:
            in_specs = [_spec(n, "input") for n in placeholders]
            out_nodes = list(torch.fx.node.map_arg(output_node.args[0], lambda n: n)) \
                if isinstance(output_node.args[0], (list, tuple)) else [output_node.args[0]]
            out_specs = [_spec(n, "output") if isinstance(n, torch.fx.Node) else None for n in out_nodes]
        except UnsupportedOp as e:
            raise UnsupportedOpError([(str(e.node), e.reason)]) from None
        if any(s is None for s in out_specs):
            raise UnsupportedOpError([("output", "graph returns a non-tensor value")])
        ftype = ir.FunctionType.get([tensor_type(s.shape, s.dtype) for s in in_specs],
                                    [tensor_type(s.shape, s.dtype) for s in out_specs])
        with ir.InsertionPoint(module.body):
            fn = func.FuncOp(func_name, ftype)
        fn.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        block = fn.add_entry_block()
        for n, arg in zip(placeholders, block.arguments):
            ctx.values[n] = arg
            i = all_placeholders.index(n)  # constants are keyed by the graph's input position
            if constants and i in constants:
                ctx.constants[n] = constants[i]
        problems = []
        with ir.InsertionPoint(block):
            for node in gm.graph.nodes:
                if node.op in ("placeholder", "output"):
                    continue
                if any(i not in ctx.values for i in _inputs_of(node)):
                    continue  # depends on a node that already failed: reported there
                try:
                    with node_location(node):
                        _import_node(ctx, node)
                except UnsupportedOp as e:
                    problems.append((registry.op_name(node.target), e.reason))
            if problems:
                raise UnsupportedOpError(problems)
            results = [ctx.values[n] for n in out_nodes] + [v for _, v in ctx.checks] + [v for _, v in ctx.mutations]
            func.ReturnOp(results)
        # An input no lowering reads (a quantized layer's scales, whose values the lowering wrote
        # into the IR as constants) is not a function argument: the call does not pass it.
        written = {a for a, _ in ctx.mutations}  # an input the graph only writes is still passed
        keep = [j for j, arg in enumerate(block.arguments) if list(arg.uses) or j in written]
        if len(keep) < len(in_specs):
            for j in reversed(range(len(in_specs))):
                if j not in keep:
                    block.erase_argument(j)
            position = {old: new for new, old in enumerate(keep)}
            ctx.mutations = [(position[a], v) for a, v in ctx.mutations]
            taken = tensor_inputs if tensor_inputs is not None else tuple(range(len(all_placeholders)))
            tensor_inputs = tuple(taken[j] for j in keep)
            in_specs = [in_specs[j] for j in keep]
            ftype = ir.FunctionType.get([tensor_type(s.shape, s.dtype) for s in in_specs], list(ftype.results))
            fn.attributes["function_type"] = ir.TypeAttr.get(ftype)
            if "arg_attrs" in fn.attributes:  # the writable marks of mutated inputs move with them
                attrs = list(ir.ArrayAttr(fn.attributes["arg_attrs"]))
                fn.attributes["arg_attrs"] = ir.ArrayAttr.get([attrs[j] for j in keep])
        if ctx.checks or ctx.mutations:  # trailing results: checks (tensor<2xi64> each), then mutations
            fn.attributes["function_type"] = ir.TypeAttr.get(
                ir.FunctionType.get(list(ftype.inputs), [v.type for v in results]))
        if ctx.checks:
            fn.attributes[CHECKS_ATTR] = ir.ArrayAttr.get([ir.StringAttr.get(m) for m, _ in ctx.checks])
            out_specs = out_specs + [TensorSpec((2,), torch.int64)] * len(ctx.checks)
        if ctx.mutations:
            i64 = ir.IntegerType.get_signless(64)
            fn.attributes[MUTATED_RESULTS_ATTR] = ir.ArrayAttr.get([ir.IntegerAttr.get(i64, a) for a, _ in ctx.mutations])
            out_specs = out_specs + [in_specs[a] for a, _ in ctx.mutations]
        aten_ops = frozenset(registry.op_name(n.target) for n in gm.graph.nodes
                             if n.op == "call_function" and n.target is not operator.getitem)
        mutated = tuple(a for a, _ in ctx.mutations)
        return ImportedGraph(module, context, func_name, in_specs, out_specs, aten_ops, mutated, tensor_inputs)


def _import_node(ctx: ImportContext, node: torch.fx.Node) -> None:
    if node.op == "get_attr":
        attr = getattr(ctx.graph_module, node.target)
        if not isinstance(attr, torch.Tensor):
            raise UnsupportedOp(node, f"get_attr of a {type(attr).__name__}")
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        with unset_fake_temporarily():  # AOT autograd compiles under fake-tensor mode: read the real value
            ctx.values[node] = dense_constant(attr)
        return
    if node.op != "call_function":
        raise UnsupportedOp(node, f"FX node kind {node.op!r} (expected an ATen-level graph)")
    if node.target is operator.getitem:
        ctx.values[node] = ctx.values[node.args[0]][node.args[1]]
        return
    if node.target in _NO_VALUE:
        ctx.values[node] = None
        return
    val = node.meta.get("val")
    for v in val if isinstance(val, (list, tuple)) else [val]:
        if isinstance(v, torch.Tensor) and any(not isinstance(s, int) for s in v.shape):
            raise UnsupportedOp(node, f"dynamic shape {tuple(v.shape)}; qmlir compiles static shapes")
    fn = registry.lookup(node.target)
    args = _map_args(node.args, ctx.values)
    kwargs = _map_args(node.kwargs, ctx.values)
    result = fn(ctx, node, *args, **kwargs)
    if result is None:
        raise UnsupportedOp(node, "lowering produced no value (a bug in qmlir)")
    if isinstance(val, (list, tuple)):
        result = tuple(_as_value(r) for r in result)
        for r, v in zip(result, val):
            _check_type(node, r, v)
    else:
        result = _as_value(result)
        _check_type(node, result, val)
    ctx.values[node] = result


def _as_value(r: Any) -> Any:
    """Normalize what op builders return (an OpView, a one-result list) to an ir.Value."""
    if isinstance(r, ir.OpView):
        r = r.result
    if isinstance(r, ir.OpResultList):
        r = r[0]
    return r


def _check_type(node: torch.fx.Node, value: Any, meta: Any) -> None:
    """A lowering must produce exactly the type FX recorded; anything else is a qmlir bug."""
    if value is None or not isinstance(meta, torch.Tensor):
        return
    expected = tensor_type(meta.shape, meta.dtype)
    if value.type != expected:
        raise UnsupportedOp(node, f"internal error: lowering produced {value.type}, expected {expected}")
