"""qmlir-protect-arguments: caller tensors are read-only.

IR that writes into a function argument (destination-passing into %arg) must bufferize to a
copy, not mutate the caller's torch tensor. This pass marks every argument of every function
`bufferization.writable = false`, which one-shot bufferization honours:

    func.func @f(%x: tensor<4xf32>)   ->   func.func @f(%x: tensor<4xf32> {bufferization.writable = false})

An argument already marked `bufferization.writable = true` keeps it: that is how IR declares an
input it mutates in place (the importer marks the inputs a graph writes back with aten.copy_).
"""
from __future__ import annotations

from mlir import ir

from qmlir.ir.walk import functions
from qmlir.passes import registry


def run(module) -> int:
    """Mark every argument of every function with a body read-only; returns how many functions."""
    fns = functions(module)
    for fn in fns:
        n = len(fn.regions[0].blocks[0].arguments)
        old = list(ir.ArrayAttr(fn.attributes["arg_attrs"])) \
            if "arg_attrs" in fn.attributes else [ir.DictAttr.get({})] * n
        attrs = []
        for d in old:
            entries = {a.name: a.attr for a in ir.DictAttr(d)}
            # an argument the IR declares writable (an input the graph mutates: aten.copy_ into
            # it, qmlir/dialect_ops/scatter.py) keeps its declaration; every other one is read-only
            entries.setdefault("bufferization.writable", ir.BoolAttr.get(False))
            attrs.append(ir.DictAttr.get(entries))
        fn.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)
    return len(fns)


registry.register_pass(
    "qmlir-protect-arguments",
    "mark every function argument not declared writable bufferization.writable=false: compiled code writes no caller tensor but the inputs it mutates",
    run,
)
