"""The same model gives the same result through torch.compile, qmlir.compile, and
qmlir-opt + qmlir-run on the emitted file."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import qmlir
from qmlir.testing import FunctionModule

BIN = Path(sys.executable).parent


def model_fn(x, w, b):
    return torch.softmax(F.gelu(F.linear(x, w, b)), dim=-1) * 2 - 1


def test_three_doors_agree(tmp_path):
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(4, 16, generator=g), torch.randn(32, 16, generator=g), torch.randn(32, generator=g))
    model = FunctionModule(model_fn)
    with torch.no_grad():
        eager = model(*args)
        via_dynamo = torch.compile(model, backend="qmlir")(*args)
        torch._dynamo.reset()
        cm = qmlir.compile(model, args)
        via_compile = cm(*args)
    torch.testing.assert_close(via_dynamo, eager, rtol=1e-5, atol=1e-6)
    assert torch.equal(via_compile, via_dynamo)

    src = tmp_path / "model.mlir"
    src.write_text(cm.mlir)
    # the file survives a round trip through qmlir-opt (here: canonicalize)
    opt = subprocess.run([BIN / "qmlir-opt", src, "--canonicalize", "-o", tmp_path / "opt.mlir"],
                         capture_output=True, text=True)
    assert opt.returncode == 0, opt.stderr
    inputs = []
    for i, a in enumerate(args):
        np.save(tmp_path / f"in{i}.npy", a.numpy())
        inputs += ["--input", str(tmp_path / f"in{i}.npy")]
    run = subprocess.run([BIN / "qmlir-run", tmp_path / "opt.mlir", *inputs, "--output-dir", tmp_path / "out"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    via_files = torch.from_numpy(np.load(tmp_path / "out" / "result0.npy"))
    torch.testing.assert_close(via_files, via_compile, rtol=1e-6, atol=1e-7)

    # and the named CPU pipeline lowers the file all the way to the LLVM dialect
    llvm = subprocess.run([BIN / "qmlir-opt", src, "--qmlir-lower-to-cpu"], capture_output=True, text=True)
    assert llvm.returncode == 0, llvm.stderr
    assert "llvm.func @forward" in llvm.stdout and "linalg." not in llvm.stdout
