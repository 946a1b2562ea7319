"""Bounds-checked indexing: an index read from data that is out of range raises
qmlir.IndexOutOfRangeError (an IndexError, as eager raises) naming the op and the index, on
every door; nothing is read out of bounds (reads are clamped), and the process lives on."""
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
SRC = torch.arange(10.0).reshape(5, 2)

# (name, fn of the index, an in-range index, [(an index eager rejects, its out-of-range value)])
CASES = [
    ("embedding", lambda i: F.embedding(i, SRC), torch.tensor([1, 4, 0]),
     [(torch.tensor([-1, 0, 0]), -1), (torch.tensor([5, 0, 0]), 5), (torch.tensor([10 ** 12, 0, 0]), 10 ** 12)]),
    ("index_select", lambda i: torch.index_select(SRC, 0, i), torch.tensor([0, 4, 2]),
     [(torch.tensor([-1, 0, 0]), -1), (torch.tensor([0, 0, 5]), 5)]),
    ("gather", lambda i: torch.gather(SRC, 0, i), torch.tensor([[4, 0], [1, 3]]),
     [(torch.tensor([[-1, 0], [0, 0]]), -1), (torch.tensor([[0, 0], [0, 5]]), 5)]),
    # advanced indexing wraps negatives, as eager does: -5..4 are in range
    ("index", lambda i: SRC[i], torch.tensor([-1, -5, 4]),
     [(torch.tensor([-6, 0, 0]), -6), (torch.tensor([5, 0, 0]), 5), (torch.tensor([0, -(2 ** 40), 0]), -(2 ** 40))]),
]


@pytest.mark.parametrize("name,fn,good,bads", CASES, ids=[c[0] for c in CASES])
def test_out_of_range_raises_like_eager(name, fn, good, bads):
    torch._dynamo.reset()
    cm = qmlir.compile(FunctionModule(fn), (good,))
    assert torch.equal(cm(good), fn(good))
    for bad, wrong in bads:
        with pytest.raises((IndexError, RuntimeError)):
            fn(bad)  # eager rejects it too
        with pytest.raises(qmlir.IndexOutOfRangeError, match=rf"aten\.{name}\..*: index {wrong} is out of bounds") as e:
            cm(bad)
        assert isinstance(e.value, IndexError)
    assert torch.equal(cm(good), fn(good))  # still usable afterwards


def test_int32_indices_and_the_dynamo_door():
    emb = torch.nn.Embedding(7, 3)
    ids = torch.tensor([[0, 6]], dtype=torch.int32)
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(emb, backend="qmlir")
        torch.testing.assert_close(compiled(ids), emb(ids))
        with pytest.raises(qmlir.IndexOutOfRangeError, match="index 7 is out of bounds for dimension 0 with size 7"):
            compiled(torch.tensor([[7, 0]], dtype=torch.int32))


def test_opt_out_drops_the_checks_but_stays_in_bounds():
    torch._dynamo.reset()
    fn = lambda i: F.embedding(i, SRC)  # noqa: E731
    cm = qmlir.compile(FunctionModule(fn), (torch.tensor([1, 2]),), bounds_checks=False)
    assert "qmlir.checks" not in cm.mlir
    torch.testing.assert_close(cm(torch.tensor([1, 2])), fn(torch.tensor([1, 2])))
    out = cm(torch.tensor([10 ** 12, -(10 ** 12)]))  # clamped reads: the last and the first row
    torch.testing.assert_close(out, SRC[[4, 0]])


def test_qmlir_run_reports_an_out_of_range_index(tmp_path):
    torch._dynamo.reset()
    cm = qmlir.compile(FunctionModule(lambda i: F.embedding(i, SRC)), (torch.tensor([1, 2]),))
    (tmp_path / "emb.mlir").write_text(cm.mlir)
    np.save(tmp_path / "src.npy", SRC.numpy())
    np.save(tmp_path / "ok.npy", np.array([1, 4], np.int64))
    np.save(tmp_path / "bad.npy", np.array([1, 99], np.int64))
    float_first = cm.graphs[-1].graph.inputs[0].dtype == torch.float32

    def args(ids):
        files = [tmp_path / "src.npy", tmp_path / ids] if float_first else [tmp_path / ids, tmp_path / "src.npy"]
        return [a for f in files for a in ("--input", str(f))]

    ok = subprocess.run([BIN / "qmlir-run", tmp_path / "emb.mlir", *args("ok.npy")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "result 0: float32[2, 2]" in ok.stdout and "result 1" not in ok.stdout  # the check is not a result
    bad = subprocess.run([BIN / "qmlir-run", tmp_path / "emb.mlir", *args("bad.npy")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "index 99 is out of bounds for dimension 0 with size 5" in bad.stderr
    assert "Traceback" not in bad.stderr
