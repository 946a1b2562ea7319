"""Bad input to the command lines gets one clear error and exit 1, and loses nothing: no
traceback, no 'internal error', no partial output file."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent

ADD = """func.func @f(%x: tensor<4xf32>, %y: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = linalg.add ins(%x, %y : tensor<4xf32>, tensor<4xf32>) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}"""
INT = """func.func @g(%x: tensor<3xi8>) -> tensor<3xi8> {
  return %x : tensor<3xi8>
}"""


def run(tool, *args, stdin=None):
    p = subprocess.run([BIN / tool, *map(str, args)], capture_output=True, input=stdin)
    err = p.stderr.decode()
    assert "Traceback" not in err and "internal error" not in err, err
    return p.returncode, p.stdout.decode(), err


def test_opt_never_writes_a_partial_output(tmp_path):
    src = tmp_path / "two.mlir"
    src.write_text(ADD + "\n// -----\nfunc.func @bad() {\n  %0 = arith.bogus\n}\n")
    out = tmp_path / "out.mlir"
    out.write_text("// the old file\n")
    code, _, err = run("qmlir-opt", src, "--split-input-file", "--canonicalize", "-o", out)
    assert code == 1 and "arith.bogus" in err and "not writing" in err
    assert out.read_text() == "// the old file\n"
    (tmp_path / "one.mlir").write_text(ADD)
    assert run("qmlir-opt", tmp_path / "one.mlir", "-o", out)[0] == 0
    assert "linalg.add" in out.read_text()
    assert not list(tmp_path.glob(".qmlir-*"))  # no temporary file left behind


@pytest.mark.parametrize("args,message", [
    (["--pass-pipeline=builtin.module(canonicalize,,cse)"], "empty element"),
    (["--pass-pipeline=builtin.module(,)"], "empty element"),
    (["--qmlir-quantize-matmul=group-size=0"], "group-size' must be >= 1"),
    (["--qmlir-select-kernels=threads=-5"], "threads' must be >= 1"),
    (["--qmlir-lower-to-cuda=opt-level=99"], "opt-level' must be >= 0 and <= 3"),
    (["--qmlir-lower-to-cuda=block-size=0"], "block-size' must be >= 32"),
])
def test_opt_rejects_bad_options(tmp_path, args, message):
    (tmp_path / "one.mlir").write_text(ADD)
    code, _, err = run("qmlir-opt", tmp_path / "one.mlir", *args)
    assert code == 1 and message in err, err


def test_non_utf8_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "latin1.mlir"
    bad.write_bytes(b"// caf\xe9\n" + ADD.encode())
    for tool in ("qmlir-opt", "qmlir-run"):
        code, _, err = run(tool, bad)
        assert code == 1 and "not UTF-8" in err, (tool, err)


def test_run_checks_its_inputs_and_outputs(tmp_path):
    (tmp_path / "add.mlir").write_text(ADD)
    (tmp_path / "int.mlir").write_text(INT)
    np.save(tmp_path / "f.npy", np.ones(4, np.float32))
    np.save(tmp_path / "s.npy", np.array(["a", "b", "c", "d"]))
    np.save(tmp_path / "c.npy", np.ones(4, np.complex64))
    np.save(tmp_path / "big.npy", np.array([1, 2, 300], np.int64))
    np.save(tmp_path / "ok.npy", np.array([1, 2, -3], np.int64))
    cases = [
        (["add.mlir", "--input", "f.npy", "--input", "s.npy"], "holds <U1"),
        (["add.mlir", "--input", "f.npy", "--input", "c.npy"], "holds complex64"),
        (["int.mlir", "--input", "big.npy"], "outside int8's range"),
        (["int.mlir", "--input", "f.npy"], "expected shape"),
        (["add.mlir", "--random-inputs", "--seed", str(2 ** 70)], "--seed must be in"),
        (["add.mlir", "--random-inputs", "--seed", "-1"], "--seed must be in"),
    ]
    for args, message in cases:
        code, _, err = run("qmlir-run", *[tmp_path / a if a.endswith((".mlir", ".npy")) else a for a in args])
        assert code == 1 and message in err, (args, err)
    code, out, err = run("qmlir-run", tmp_path / "int.mlir", "--input", tmp_path / "ok.npy")
    assert code == 0 and "-3" in out, err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run("qmlir-run", tmp_path / "add.mlir", "--random-inputs", "--output-dir", blocker / "out")
    assert code == 1 and "cannot write" in err, err


def test_run_rejects_an_i4_argument(tmp_path):
    (tmp_path / "i4.mlir").write_text("func.func @h(%x: tensor<4xi4>) -> tensor<4xi4> {\n  return %x : tensor<4xi4>\n}\n")
    code, _, err = run("qmlir-run", tmp_path / "i4.mlir", "--random-inputs")
    assert code == 1 and "i4" in err, err
