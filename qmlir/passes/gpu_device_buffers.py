"""Make every buffer a host function touches live in device memory, allocated by the caller.

After one-shot bufferization a host function allocates its intermediates with `memref.alloc`,
reads constants through `memref.get_global` (host memory) and copies with `memref.copy` (a
host memcpy). On the GPU none of these may stay as they are:

    func.func @forward(%x: memref<8x32xf32>, %out: memref<8x32xf32>) {
      %t = memref.alloc() : memref<8x32xf32>
      %w = memref.get_global @__constant_32xf32 : memref<32xf32>
      memref.copy %t, %out : memref<8x32xf32> to memref<8x32xf32>

becomes

    func.func @forward(%x: memref<8x32xf32>, %out: memref<8x32xf32>,
                       %constants: memref<128xi8>, %workspace: memref<1024xi8>)
        attributes {qmlir.constant_bytes = 128, qmlir.workspace_bytes = 1024} {
      %t = memref.view %workspace[%c0][] : memref<1024xi8> to memref<8x32xf32>
      %w = memref.view %constants[%c0][] : memref<128xi8> to memref<32xf32>
      linalg.copy ins(%t : ...) outs(%out : ...)          // a kernel, mapped like any linalg op
    }
    func.func @forward_upload_constants(%constants: memref<128xi8>) {
      gpu.memcpy %view, %host_global                      // run once, when the module is loaded
    }

The caller (qmlir.runtime.cuda) allocates both buffers with torch's caching allocator: one
allocation per call for the workspace, none inside the compiled code (cuMemAlloc/cuMemFree
would synchronize the device); the constants are uploaded once.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlir import ir
from mlir.dialects import arith, func, gpu, linalg, memref

from qmlir.errors import CompileError
from qmlir.passes import registry

ALIGN = 256  # bytes: cudaMalloc's alignment, enough for any vector access
CONSTANT_BYTES_ATTR = "qmlir.constant_bytes"
WORKSPACE_BYTES_ATTR = "qmlir.workspace_bytes"
UPLOAD_SUFFIX = "_upload_constants"
DEVICE_BUFFERS_ATTR = "qmlir.device_buffers"


@dataclass(frozen=True)
class DeviceBuffers:
    """What a caller must allocate for one host function: two trailing byte buffers."""

    function: str
    constant_bytes: int
    workspace_bytes: int
    upload_function: str


def _nbytes(t: ir.MemRefType, what: str) -> int:
    if not t.has_static_shape:
        raise CompileError(f"gpu device buffers: {what} of dynamic shape {t}; only static shapes are supported")
    if t.layout != ir.AffineMapAttr.get(ir.AffineMap.get_identity(t.rank)):
        raise CompileError(f"gpu device buffers: {what} with a non-identity layout {t}")
    width = getattr(t.element_type, "width", None)
    if width is None:
        raise CompileError(f"gpu device buffers: {what} of element type {t.element_type} has no bit width")
    n = 1
    for s in t.shape:
        n *= s
    return n * max(1, -(-width // 8))


def _buffer_type(nbytes: int) -> ir.MemRefType:
    return ir.MemRefType.get([max(1, nbytes)], ir.IntegerType.get_signless(8))


def _copies_to_linalg(block: ir.Block) -> int:
    copies = [op.operation for op in block.operations if op.operation.name == "memref.copy"]
    for op in copies:
        src, dst = op.operands
        with op.location, ir.InsertionPoint(op):
            linalg.copy(src, outs=[dst])
        op.erase()
    return len(copies)


def _layout(ops: list, what: str) -> tuple[list[int], int]:
    offsets, total = [], 0
    for op in ops:
        offsets.append(total)
        total += -(-_nbytes(ir.MemRefType(op.results[0].type), what) // ALIGN) * ALIGN
    return offsets, total


def _view(buffer: ir.Value, offset: int, t: ir.MemRefType) -> ir.Value:
    return memref.view(t, buffer, arith.constant(ir.IndexType.get(), offset), [])


def _append_argument(fn: ir.Operation, t: ir.Type) -> ir.Value:
    ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
    fn.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs) + [t], list(ftype.results)))
    if "arg_attrs" in fn.attributes:
        attrs = list(ir.ArrayAttr(fn.attributes["arg_attrs"])) + [ir.DictAttr.get({})]
        fn.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)
    return fn.regions[0].blocks[0].add_argument(t, fn.location)


def _in_host_loop(op: ir.Operation) -> bool:
    """True when `op` is nested in an scf loop of the host function (not in a GPU kernel)."""
    parent = op.parent
    while parent is not None and parent.name != "func.func":
        if parent.name in ("scf.for", "scf.while", "scf.forall", "scf.parallel"):
            return True
        if parent.name.startswith("gpu."):
            return False
        parent = parent.parent
    return False


def _rewrite_function(fn: ir.Operation, module: ir.Module) -> DeviceBuffers:
    name = ir.StringAttr(fn.attributes["sym_name"]).value
    if len(fn.regions[0].blocks) != 1:
        raise CompileError(f"gpu device buffers: @{name} has {len(fn.regions[0].blocks)} blocks; expected one")
    block = fn.regions[0].blocks[0]
    _copies_to_linalg(block)
    allocs, globals_, deallocs = [], [], []
    problems: list = []  # raised after the walk (an exception inside its callback loses its type)

    def visit(op):
        if op.name in ("memref.load", "memref.store", "memref.copy") and _in_host_loop(op):
            # index_put / scatter lower to host loops of element or slice writes: on the GPU target
            # those would read and write device memory from the host
            problems.append(f"gpu device buffers: '{op.name}' inside a loop on the host in @{name} (an "
                            "index_put/scatter/KV-cache write): not supported on the CUDA target yet")
            return ir.WalkResult.INTERRUPT
        if op.name == "memref.alloc":
            allocs.append(op)
        elif op.name == "memref.get_global":
            globals_.append(op)
        elif op.name == "memref.dealloc":
            deallocs.append(op)
        elif op.name in ("memref.alloca", "memref.copy"):
            if op.parent.name == "func.func":  # top-level ones were handled above
                problems.append(f"gpu device buffers: '{op.name}' on the host is not supported: {op}")
                return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    fn.walk(visit)
    if problems:
        raise CompileError(problems[0])
    for op in allocs + globals_:
        if op.parent.name != "func.func":
            raise CompileError(f"gpu device buffers: '{op.name}' nested in '{op.parent.name}' in @{name}; "
                               "only top-level allocations can move to the workspace")
    for op in deallocs:
        op.erase()
    c_offsets, c_total = _layout(globals_, "a constant")
    w_offsets, w_total = _layout(allocs, "an allocation")
    constants = _append_argument(fn, _buffer_type(c_total))
    workspace = _append_argument(fn, _buffer_type(w_total))
    for ops, offsets, buffer in ((globals_, c_offsets, constants), (allocs, w_offsets, workspace)):
        for op, offset in zip(ops, offsets):
            with op.location, ir.InsertionPoint(op):
                v = _view(buffer, offset, ir.MemRefType(op.results[0].type))
            op.results[0].replace_all_uses_with(v)
    upload = name + UPLOAD_SUFFIX
    with fn.location, ir.InsertionPoint(module.body):
        up = func.FuncOp(upload, ir.FunctionType.get([_buffer_type(c_total)], []))
        up.operation.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        entry = up.add_entry_block()
        with ir.InsertionPoint(entry):
            for op, offset in zip(globals_, c_offsets):
                t = ir.MemRefType(op.results[0].type)
                host = memref.get_global(t, ir.FlatSymbolRefAttr(op.attributes["name"]).value)
                gpu.memcpy(None, [], _view(entry.arguments[0], offset, t), host)
            func.ReturnOp([])
    for op in globals_:
        op.erase()
    for op in allocs:
        op.erase()
    i64 = ir.IntegerType.get_signless(64)
    fn.attributes[CONSTANT_BYTES_ATTR] = ir.IntegerAttr.get(i64, c_total)
    fn.attributes[WORKSPACE_BYTES_ATTR] = ir.IntegerAttr.get(i64, w_total)
    return DeviceBuffers(name, c_total, w_total, upload)


def run(module: ir.Module) -> list[DeviceBuffers]:
    """Rewrite every host function with a body; returns what each one's caller must allocate."""
    fns = [op.operation for op in module.body.operations
           if op.operation.name == "func.func" and op.operation.regions[0].blocks]
    buffers = [_rewrite_function(fn, module) for fn in fns]
    record(module, buffers)
    return buffers


def record(module, buffers: list) -> None:
    """Write what each host function's caller allocates on the module, where it survives the
    lowering to LLVM: `qmlir.device_buffers = {f = [constant bytes, workspace bytes]}` (the
    upload function of f is f + UPLOAD_SUFFIX)."""
    i64 = ir.IntegerType.get_signless(64)
    module.operation.attributes[DEVICE_BUFFERS_ATTR] = ir.DictAttr.get({
        b.function: ir.ArrayAttr.get([ir.IntegerAttr.get(i64, b.constant_bytes),
                                      ir.IntegerAttr.get(i64, b.workspace_bytes)]) for b in buffers})


def recorded(module_op: ir.Operation) -> list:
    """The DeviceBuffers written on a (lowered) module by this pass."""
    if DEVICE_BUFFERS_ATTR not in module_op.attributes:
        return []
    out = []
    for entry in ir.DictAttr(module_op.attributes[DEVICE_BUFFERS_ATTR]):
        c, w = (int(ir.IntegerAttr(v).value) for v in ir.ArrayAttr(entry.attr))
        out.append(DeviceBuffers(entry.name, c, w, entry.name + UPLOAD_SUFFIX))
    return out


registry.register_pass(
    "qmlir-gpu-device-buffers",
    "host allocations/constants -> views of caller-allocated device buffers; memref.copy -> linalg.copy",
    run,
    anchor="builtin.module",
)
