"""One quantization semantics on every door and target: a W8A8 linear quantized by
qmlir.quantize computes with integer multiply-accumulate (i8 x i8 -> i32) through
torch.compile, qmlir.compile (CPU: ISA kernels and the portable path), qmlir-opt + qmlir-run on
its emitted IR, and the cuda pipeline to PTX; the CPU doors agree bit for bit."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlir import ir

import qmlir
from qmlir.runtime.cpu import CpuFunction
from qmlir.target import Target

BIN = Path(sys.executable).parent
INTEGER_MAC_LLVM = re.compile(r"llvm\.x86\.avx512\.vpdpbusd\.512|llvm\.mul .*: vector<\d+xi32>")
INTEGER_MAC_PTX = re.compile(r"\b(mad|mul)\.(lo|wide)\.s(16|32)\b")


@pytest.fixture(scope="module")
def w8a8():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128)).eval()
    calib = [(torch.randn(8, 64),) for _ in range(4)]
    qmodel = qmlir.quantize(model, calib, "w8a8-static", progress=False)
    x = torch.randn(8, 64)
    with torch.no_grad():
        eager = qmodel(x)
    return qmodel, x, eager


def lowered_text(fn: CpuFunction) -> str:
    with ir.Context():
        return str(ir.Module.parse(fn.artifact.bytecode))


def fused_matmul_in(text: str) -> bool:
    """The quantized matmul is an i8 x i8 -> i32 linalg.matmul and no quant op is left."""
    return re.search(r"linalg\.matmul.*ins\(.*tensor<\d+x\d+xi8>, tensor<\d+x\d+xi8>\).*outs\(.*xi32>", text) is not None \
        and "quant." not in text


def test_every_door_computes_with_integers(w8a8, tmp_path):
    qmodel, x, eager = w8a8
    torch._dynamo.reset()
    with torch.no_grad():
        via_dynamo = torch.compile(qmodel, backend="qmlir")(x)
    torch._dynamo.reset()

    # qmlir.compile on this CPU, and on the portable path (no ISA kernels)
    cm = qmlir.compile(qmodel, (x,))
    fn = cm.graphs[-1].function
    assert INTEGER_MAC_LLVM.search(lowered_text(fn)), "no integer multiply-accumulate in the CPU code"
    captured = []
    real_call = CpuFunction.__call__

    def capture(self, *args):
        if self is fn:
            captured.append([a.detach().clone() for a in args])
        return real_call(self, *args)
    CpuFunction.__call__ = capture
    try:
        via_compile = cm(x)
    finally:
        CpuFunction.__call__ = real_call
    torch._dynamo.reset()
    portable = qmlir.compile(qmodel, (x,), target=Target.cpu(features=()))
    pfn = portable.graphs[-1].function
    assert re.search(r"llvm\.mul .*: vector<\d+xi32>", lowered_text(pfn)), "portable path: no i32 vector multiply"
    via_portable = portable(x)

    torch.testing.assert_close(via_compile, eager, rtol=1e-6, atol=1e-6)
    assert torch.equal(via_compile, via_dynamo)
    assert torch.equal(via_compile, via_portable)

    # qmlir-opt + qmlir-run on the emitted file: the quant stage makes the same integer matmul,
    # and qmlir-run (which starts with that stage too) gives the same numbers from either file
    src = tmp_path / "w8a8.mlir"
    src.write_text(cm.mlir)
    assert "quant." in cm.mlir and not fused_matmul_in(cm.mlir)
    opt = subprocess.run([BIN / "qmlir-opt", src, "--qmlir-quant-semantics", "-o", tmp_path / "fused.mlir"],
                         capture_output=True, text=True)
    assert opt.returncode == 0, opt.stderr
    assert fused_matmul_in((tmp_path / "fused.mlir").read_text())
    (args,) = captured
    inputs = []
    for i, a in enumerate(args):
        np.save(tmp_path / f"in{i}.npy", a.numpy())
        inputs += ["--input", str(tmp_path / f"in{i}.npy")]
    for name in ("w8a8.mlir", "fused.mlir"):
        out = tmp_path / f"out-{name}"
        run = subprocess.run([BIN / "qmlir-run", tmp_path / name, *inputs, "--output-dir", out],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert torch.equal(torch.from_numpy(np.load(out / "result0.npy")), via_compile), name

    # the cuda pipeline to PTX: integer multiply-accumulate in the kernels
    art = Target.cuda(chip="sm_90", features="+ptx80").compile(cm.mlir)
    assert INTEGER_MAC_PTX.search(art.extras["ptx"]), "no integer multiply-accumulate in the PTX"
