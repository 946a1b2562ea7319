"""Features the README documents, each tested once: `mlir_with_locations()`, the
`QMLIR_MLIR_LIB_DIR` override, compiling under `torch.inference_mode()`."""
import os
import warnings

import pytest
import torch

import qmlir
from qmlir.errors import QmlirError
from qmlir.runtime import libs


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.relu(self.fc(x)) * 2.0


def test_mlir_with_locations_names_nodes_and_source_lines():
    cm = qmlir.compile(Small(), (torch.randn(3, 8),))
    plain, located = cm.mlir, cm.mlir_with_locations()
    assert "loc(" not in plain
    assert os.path.basename(__file__) in located  # the model's source file ...
    line = Small.forward.__code__.co_firstlineno + 1
    assert f'{os.path.basename(__file__)}":{line}' in located  # ... and the line of forward's body
    assert 'loc("relu"' in located or '"relu"' in located  # FX node names
    # the same module: dropping the locations gives the plain text back
    assert located.count("linalg.") == plain.count("linalg.")


def test_mlir_lib_dir_override(tmp_path, monkeypatch):
    """QMLIR_MLIR_LIB_DIR points the runtime at another directory of MLIR's runtime libraries;
    one without them is a QmlirError naming the library and the variable."""
    real = libs.runtime_library("c_runner_utils")
    (tmp_path / os.path.basename(real)).symlink_to(real)
    monkeypatch.setenv("QMLIR_MLIR_LIB_DIR", str(tmp_path))
    assert libs.runtime_library("c_runner_utils") == str(tmp_path / os.path.basename(real))
    monkeypatch.setenv("QMLIR_MLIR_LIB_DIR", str(tmp_path / "empty"))
    with pytest.raises(QmlirError, match=r"libmlir_c_runner_utils\.so not found in .*empty.*QMLIR_MLIR_LIB_DIR"):
        libs.runtime_library("c_runner_utils")
    monkeypatch.delenv("QMLIR_MLIR_LIB_DIR")
    assert libs.runtime_library("c_runner_utils") == real


def test_inference_mode_compiles_without_fallback():
    """Under torch.inference_mode (tensors without version counters), the backend compiles, a
    quantized model's frozen scales are still honoured, and nothing falls back."""
    model = Small().eval()
    q = qmlir.quantize(model, None, qmlir.QuantConfig(skip=[]), progress=False)
    torch._dynamo.reset()
    x = torch.randn(3, 8)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error", qmlir.QmlirFallbackWarning)
        out = torch.compile(model, backend="qmlir")(x)
        qout = torch.compile(q, backend=qmlir.backend(strict=True))(x)
        cm_out = qmlir.compile(model, (x,))(x)
        ref, qref = model(x), q(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cm_out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(qout, qref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(qref, ref)  # the quantized model is not the float one
