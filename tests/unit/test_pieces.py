"""Pure-Python pieces: dtype mapping, broadcasting maps, slice bounds, registry, README sync."""
from pathlib import Path

import pytest
import torch
from mlir import ir

from qmlir.dialect_ops import registry
from qmlir.ir.builders import broadcast_map
from qmlir.dialect_ops.shape import _slice_bounds
from qmlir.errors import QmlirError, UnsupportedOpError
from qmlir.ir.types import element_type, scalar_type, torch_dtype
from qmlir.runtime.memref import descriptor_type, make_descriptor


@pytest.fixture
def ctx():
    with ir.Context() as c:
        yield c


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64,
                                   torch.int64, torch.int32, torch.int16, torch.int8])
def test_dtype_round_trip(ctx, dtype):
    assert torch_dtype(element_type(dtype)) == dtype


def test_bool_is_stored_as_bytes_and_computed_as_i1(ctx):
    assert str(element_type(torch.bool)) == "i8"
    assert str(scalar_type(torch.bool)) == "i1"


def test_unsupported_dtype_is_named(ctx):
    with pytest.raises(QmlirError, match="complex64"):
        element_type(torch.complex64)


def test_broadcast_map(ctx):
    assert str(broadcast_map([4], [3, 4])) == "(d0, d1) -> (d1)"
    assert str(broadcast_map([3, 1], [3, 4])) == "(d0, d1) -> (d0, 0)"
    assert str(broadcast_map([1, 1], [1, 4])) == "(d0, d1) -> (d0, 0)"
    assert str(broadcast_map([], [2, 2])) == "(d0, d1) -> ()"


@pytest.mark.parametrize("size,start,end,step,expected", [
    (7, None, None, 1, (0, 7)), (7, 1, 5, 2, (1, 2)), (7, -3, None, 1, (4, 3)),
    (7, 2, 100, 1, (2, 5)), (7, 5, 2, 1, (5, 0)), (7, -100, 3, 1, (0, 3)),
    (9223372036854775807, 0, 9223372036854775807, 1, (0, 9223372036854775807)),
])
def test_slice_bounds_match_python(size, start, end, step, expected):
    assert _slice_bounds(size, start, end, step) == expected
    if size < 100:
        assert len(range(size)[slice(start, end, step)]) == expected[1]


def test_memref_descriptor_is_row_major():
    d = make_descriptor((2, 3, 4))
    assert list(d.sizes) == [2, 3, 4] and list(d.strides) == [12, 4, 1]
    assert descriptor_type(3) is descriptor_type(3)  # one class per rank, made once
    assert make_descriptor(()).offset == 0


def test_registry_rejects_double_registration():
    with pytest.raises(ValueError, match="two lowerings"):
        registry.lowering(torch.ops.aten.mm.default)(lambda *a: None)


def test_unsupported_op_error_counts_and_sorts():
    err = UnsupportedOpError([("aten.b", "why"), ("aten.a", "why"), ("aten.b", "why")])
    assert err.ops == ["aten.a", "aten.b"]
    assert "aten.b x2: why" in str(err)


def test_readme_lists_every_supported_op():
    """The README's op table is generated (make supported-ops); it must match the registry."""
    from qmlir.tools.supported_ops import table
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table() in readme, "README.md's op table is stale: paste `make supported-ops` into it"


def test_demo_script_parses_and_documents_itself():
    """make demo's script is not run by the suite (it loads SmolLM2 twice over); at least it
    must import and answer --help."""
    import subprocess
    import sys
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    out = subprocess.run([sys.executable, str(demo), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--new-tokens" in out.stdout
