"""What a user gets for things qmlir cannot do: one clear warning or a typed error, never a
wrong answer."""
import warnings

import pytest
import torch

import qmlir
from qmlir.frontend.dynamo_backend import QmlirFallbackWarning


class TopK(torch.nn.Module):
    def forward(self, x):
        a = torch.topk(x, 2).values
        b = torch.topk(x * 2, 3).values
        return torch.sort(a + 1).values, b.sum()


def test_unsupported_op_warns_once_and_runs_eagerly():
    x = torch.randn(4, 8)
    model = TopK()
    compiled = torch.compile(model, backend="qmlir")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(x)
        out2 = compiled(x)
    ref = model(x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out2, ref)
    msgs = [str(w.message) for w in caught if issubclass(w.category, QmlirFallbackWarning)]
    assert len(msgs) == 1, msgs
    assert "aten.topk.default x2" in msgs[0] and "aten.sort" in msgs[0]


def test_strict_backend_raises_listing_all_ops():
    compiled = torch.compile(TopK(), backend=qmlir.backend(strict=True))
    with pytest.raises(qmlir.UnsupportedOpError) as info:  # itself, not Dynamo's BackendCompilerFailed
        compiled(torch.randn(4, 8))
    assert not isinstance(info.value, torch._dynamo.exc.BackendCompilerFailed)
    assert type(info.value).__name__ == "UnsupportedOpError" and info.value.ops == sorted(info.value.ops)
    text = str(info.value)
    assert text.startswith("2 unsupported op(s)") and "aten.topk.default" in text and "aten.sort" in text


def test_strict_backend_raises_qmlir_errors_as_themselves():
    """A graph that needs gradients: the strict backend's own UnsupportedOpError (raised before
    AOT autograd), unwrapped too; the same error again on the next call."""
    lin = torch.nn.Linear(4, 4)
    compiled = torch.compile(lin, backend=qmlir.backend(strict=True))
    for _ in range(2):
        with pytest.raises(qmlir.UnsupportedOpError, match="needs gradients"):
            compiled(torch.randn(2, 4))


def test_qmlir_compile_raises_unsupported_op_error():
    with pytest.raises(qmlir.UnsupportedOpError) as info:
        qmlir.compile(TopK(), (torch.randn(4, 8),))
    assert info.value.ops == sorted(info.value.ops)
    assert any("topk" in op for op in info.value.ops) and any("sort" in op for op in info.value.ops)


def test_wrong_shape_or_dtype_is_a_clear_error():
    model = torch.nn.Linear(8, 4)
    cm = qmlir.compile(model, (torch.randn(2, 8),))
    torch.testing.assert_close(cm(torch.ones(2, 8)), model(torch.ones(2, 8)), rtol=1e-5, atol=1e-5)
    with pytest.raises(qmlir.InputMismatchError, match=r"compiled for float32\[2, 8\], got float32\[3, 8\]"):
        cm(torch.randn(3, 8))
    with pytest.raises(qmlir.InputMismatchError, match="bfloat16"):
        cm(torch.randn(2, 8, dtype=torch.bfloat16))
    with pytest.raises(qmlir.InputMismatchError, match="structured"):
        cm(torch.randn(2, 8), torch.randn(2, 8))


def test_compiled_function_checks_its_inputs():
    graph = qmlir.import_model(torch.nn.ReLU(), (torch.randn(3),))
    from qmlir.target import build
    fn = build(graph.mlir, entry=graph.func_name)
    assert torch.equal(fn(torch.tensor([-1.0, 0.0, 2.0]))[0], torch.tensor([0.0, 0.0, 2.0]))
    with pytest.raises(qmlir.InputMismatchError, match="takes 1 tensor"):
        fn()
    with pytest.raises(qmlir.InputMismatchError, match="compiled for"):
        fn(torch.zeros(4))


def test_non_contiguous_inputs_are_handled():
    cm = qmlir.compile(torch.nn.Tanh(), (torch.randn(4, 3),))
    x = torch.randn(3, 4).t()  # same shape, transposed strides
    torch.testing.assert_close(cm(x), torch.tanh(x))


def test_graph_needing_gradients_runs_eagerly_with_a_warning():
    model = torch.nn.Linear(4, 2)
    compiled = torch.compile(model, backend="qmlir")
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(x)
    out.sum().backward()  # still differentiable: it ran eagerly
    assert model.weight.grad is not None
    assert any("gradients" in str(w.message) for w in caught if issubclass(w.category, QmlirFallbackWarning))


def test_dynamic_shapes_compile_per_shape():
    """A graph with symbolic sizes (dynamic=True) is compiled once per concrete shape at call
    time, not run eagerly."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU())
    graphs = []
    compiled = torch.compile(model, backend=qmlir.backend(on_compile=graphs.append), dynamic=True)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in (2, 3, 5, 3):
            x = torch.randn(n, 4)
            torch.testing.assert_close(compiled(x), model(x))
    assert not [w for w in caught if issubclass(w.category, QmlirFallbackWarning)]
    assert [g.graph.inputs[-1].shape for g in graphs] == [(2, 4), (3, 4), (5, 4)]


def test_weights_are_read_at_call_time_not_copied():
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    cm = qmlir.compile(model, (x,))
    with torch.no_grad():
        model.weight.mul_(2.0)
        torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-5)


def test_an_internal_failure_falls_back_eagerly(monkeypatch):
    """A bug inside qmlir (here: a lowering that raises) warns and runs the graph eagerly."""
    from qmlir.dialect_ops import registry

    def broken(ctx, node, *args, **kwargs):
        raise RuntimeError("simulated lowering bug")

    monkeypatch.setitem(registry._REGISTRY, torch.ops.aten.tanh.default, broken)
    model = torch.nn.Tanh()
    x = torch.randn(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = torch.compile(model, backend="qmlir")(x)
    torch.testing.assert_close(out, torch.tanh(x))
    assert any("simulated lowering bug" in str(w.message) for w in caught
               if issubclass(w.category, QmlirFallbackWarning))


def test_qmlir_compile_is_not_stopped_by_dynamo_recompile_limit():
    """Each qmlir.compile is its own capture: a low recompile limit does not stop a third one
    (the user's torch.compile calls keep the limit)."""
    model = torch.nn.Tanh()
    with torch._dynamo.config.patch(recompile_limit=2):  # (monkeypatch's undo deletes config entries)
        for n in (2, 3, 4, 5):
            x = torch.randn(n)
            torch.testing.assert_close(qmlir.compile(model, (x,))(x), torch.tanh(x))
