"""qmlir-drop-mutated-results: after bufferization, write each mutated result into its
argument and remove it from the function.

A function that writes arguments in place (a graph's input mutations, `aten.copy_(input,
value)`: qmlir/dialect_ops/scatter.py) returns their new values as trailing results, named by
argument position in `qmlir.mutated_results`, with those arguments `bufferization.writable`.
One-shot bufferization computes a value in its argument's own buffer when it can (an
index_put chain into a KV cache); elsewhere the value lands in a buffer of its own. This pass
removes the mutated results, and copies a value into its argument's buffer where it is not
there already, so callers never receive them and `buffer-results-to-out-params` copies no
KV cache into an out-parameter:

    func.func @f(%cache: memref<4x8xf32>, %n: memref<i64>, %x: memref<1x8xf32>)
        -> (memref<1x8xf32>, memref<4x8xf32>, memref<i64>) attributes {qmlir.mutated_results = [0, 1]} {
      ...                                   // %cache written in place, %n + 1 computed into %alloc
      return %y, %cache, %alloc : memref<1x8xf32>, memref<4x8xf32>, memref<i64>
    }
->
    func.func @f(%cache: memref<4x8xf32>, %n: memref<i64>, %x: memref<1x8xf32>) -> memref<1x8xf32> {
      ...
      memref.copy %alloc, %n : memref<i64> to memref<i64>
      return %y : memref<1x8xf32>
    }

A copy at the end would change what a result that is a view of the same argument reads; such
a function is rejected (CompileError) rather than miscompiled.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import func, memref

from qmlir.errors import CompileError
from qmlir.ir.specs import MUTATED_RESULTS_ATTR, function_name, mutated_results
from qmlir.ir.walk import functions
from qmlir.passes import registry

_VIEWS = {"memref.subview", "memref.expand_shape", "memref.collapse_shape", "memref.cast",
          "memref.reinterpret_cast", "memref.transpose", "memref.view"}


def _root(v: ir.Value) -> ir.Value:
    """The buffer `v` is a view of (through view-like ops), or `v`."""
    while not isinstance(v, ir.BlockArgument) and v.owner.name in _VIEWS:
        v = v.owner.operands[0]
    return v


def run(module) -> int:
    """Write back and drop the trailing mutated results of every function; returns how many."""
    dropped = 0
    for fn in functions(module):
        args = mutated_results(fn)
        if not args:
            continue
        n = len(args)
        name = function_name(fn)
        block = fn.regions[0].blocks[0]
        ret = block.operations[len(block.operations) - 1].operation
        operands = list(ret.operands)
        keep, written = operands[:-n], operands[-n:]
        with ret.location, ir.InsertionPoint(ret):
            for pos, v in zip(args, written):
                arg = block.arguments[pos]
                if not isinstance(v.type, ir.MemRefType):
                    raise CompileError(f"@{name}: qmlir-drop-mutated-results runs after bufferization "
                                       f"(a mutated result is {v.type})")
                if v == arg:
                    continue  # computed in place
                if any(_root(k) == arg for k in keep):
                    raise CompileError(f"@{name}: a result is a view of argument {pos}, which the function "
                                       "also overwrites; cannot write the argument without changing the result")
                memref.copy(v, arg)
            func.ReturnOp(keep)
        ret.erase()
        ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
        fn.attributes["function_type"] = ir.TypeAttr.get(
            ir.FunctionType.get(list(ftype.inputs), list(ftype.results)[:-n]))
        if "res_attrs" in fn.attributes:
            fn.attributes["res_attrs"] = ir.ArrayAttr.get(list(ir.ArrayAttr(fn.attributes["res_attrs"]))[:-n])
        del fn.attributes[MUTATED_RESULTS_ATTR]
        dropped += n
    return dropped


registry.register_pass(
    "qmlir-drop-mutated-results",
    "after bufferization: write each mutated result (qmlir.mutated_results) into its argument where it is "
    "not there already, and drop those results",
    run,
    anchor="builtin.module",
)
