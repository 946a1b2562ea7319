"""The same model gives the same result through torch.compile, qmlir.compile, and
qmlir-opt + qmlir-run on the emitted file."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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


def test_passes_run_the_same_from_every_door(tmp_path):
    """qmlir.compile(passes=...), torch.compile(backend=qmlir.backend(passes=...)) and qmlir-opt
    run the same registered pass: the same IR and the same numbers."""
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(4, 16, generator=g), torch.randn(32, 16, generator=g), torch.randn(32, generator=g))
    model = FunctionModule(model_fn)
    pipeline = "qmlir-mixed-precision{type=bf16}"
    cm = qmlir.compile(model, args, passes=pipeline)
    assert "bf16" in cm.mlir
    torch._dynamo.reset()
    graphs = []
    with torch.no_grad():
        out_dynamo = torch.compile(model, backend=qmlir.backend(passes=pipeline, on_compile=graphs.append))(*args)
    assert graphs[0].graph.mlir == cm.mlir
    out = cm(*args)
    assert torch.equal(out, out_dynamo)
    torch._dynamo.reset()
    plain = qmlir.compile(model, args)
    (tmp_path / "plain.mlir").write_text(plain.mlir)
    opt = subprocess.run([BIN / "qmlir-opt", tmp_path / "plain.mlir", f"--pass-pipeline=builtin.module({pipeline})"],
                         capture_output=True, text=True)
    assert opt.returncode == 0, opt.stderr
    from mlir import ir
    with ir.Context():
        assert str(ir.Module.parse(opt.stdout)) == str(ir.Module.parse(cm.mlir))
    ref = model_fn(args[0].bfloat16().float(), args[1].bfloat16().float(), args[2])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_a_bad_pipeline_is_a_clear_error():
    from qmlir.passes.pipeline import PipelineError
    with pytest.raises(qmlir.QmlirError, match="qmlir-mixed-precision: option 'type' must be one of"):
        qmlir.compile(FunctionModule(torch.relu), (torch.randn(3),), passes="qmlir-mixed-precision{type=f8}")
    with pytest.raises(PipelineError, match="unbalanced"):
        qmlir.backend(passes="builtin.module(cse")
