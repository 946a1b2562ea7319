"""Graphs that write into their inputs: index_put (accumulate false and true), index_copy_,
scatter, slice and select writes, a counter's add_. The compiled function writes the caller's
tensor in place (same storage, no copy of the whole tensor) and no other input changes; the
results and the written tensor equal eager's, through qmlir.compile and torch.compile."""
import pytest
import torch

import qmlir
from qmlir.testing import FunctionModule


def _kv_write(cache, pos, kv, x):
    cache.index_copy_(2, pos, kv)
    return cache.sum(2) + x


def _put(x, i, v):
    x.index_put_((i,), v)
    return x * 2


def _put_accumulate(x, i, v):
    x.index_put_((i,), v, accumulate=True)
    return x + 1


def _put_2d(x, i, j, v):
    x[i, j] = v  # two index tensors, broadcast together
    return x.sum()


def _put_middle(x, i, v):
    x[:, i] = v  # index on the middle dim, a value broadcast over the rest
    return x.mean(0)


def _slice_write(x, v):
    x[:, 1:3] = v
    return x.amax(1)


def _select_write(x, v):
    x[2] = v
    return x.sum(0)


def _scatter(x, i, v):
    x.scatter_(1, i, v)
    return x.clone()


def _scatter_add(x, i, v):
    x.scatter_add_(0, i, v)
    return x * 1


def _scatter_value(x, i):
    x.scatter_(1, i, 7.0)
    return x - 1


def _counter(n, x):
    y = x + n
    n.add_(1)
    return y


def _two_caches(k, v, pos, nk, nv, q):
    k.index_copy_(1, pos, nk)
    v.index_copy_(1, pos, nv)
    return (q @ k) @ v.transpose(0, 1)


CASES = [
    ("kv_cache", _kv_write, lambda: (torch.zeros(1, 2, 8, 4), torch.tensor([3, 5]), torch.randn(1, 2, 2, 4),
                                      torch.randn(1, 2, 4))),
    ("index_put", _put, lambda: (torch.randn(6, 3), torch.tensor([4, -1, 0]), torch.randn(3, 3))),
    ("index_put_accumulate", _put_accumulate,
     lambda: (torch.randn(5, 3), torch.tensor([0, -1, 0, 2]), torch.randn(4, 3))),  # duplicates add up
    ("index_put_2d", _put_2d, lambda: (torch.randn(4, 5), torch.tensor([[0], [3]]), torch.tensor([1, 4, 2]),
                                        torch.randn(2, 3))),
    ("index_put_middle", _put_middle, lambda: (torch.randn(2, 6, 3), torch.tensor([5, 1]), torch.randn(3))),
    ("slice_scatter", _slice_write, lambda: (torch.randn(3, 5), torch.randn(3, 2))),
    ("select_scatter", _select_write, lambda: (torch.randn(4, 3), torch.randn(3))),
    ("scatter", _scatter, lambda: (torch.randn(3, 5), torch.tensor([[0, 4], [2, 2], [1, 0]]), torch.randn(3, 2))),
    ("scatter_add", _scatter_add, lambda: (torch.randn(4, 2), torch.tensor([[0, 3], [0, 0], [2, 3]]),
                                           torch.randn(3, 2))),
    ("scatter_value", _scatter_value, lambda: (torch.randn(2, 4), torch.tensor([[3], [0]]))),
    ("counter_0d", _counter, lambda: (torch.tensor(5), torch.arange(3))),
    ("two_caches", _two_caches, lambda: (torch.zeros(4, 6), torch.zeros(4, 6), torch.tensor([2]),
                                         torch.randn(4, 1), torch.randn(4, 1), torch.randn(3, 4))),
]


def _call_and_compare(fn, compiled, make):
    torch.manual_seed(0)
    args = make()
    ref_args = [a.clone() for a in args]
    ref = fn(*ref_args)
    got_args = [a.clone() for a in args]
    ptrs = [a.data_ptr() for a in got_args]
    got = compiled(*got_args)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for i, (a, r, orig) in enumerate(zip(got_args, ref_args, args)):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5, msg=lambda m: f"input {i}: {m}")
        if torch.equal(r, orig):
            assert torch.equal(a, orig), f"input {i} is not mutated by eager, but changed"
    assert [a.data_ptr() for a in got_args] == ptrs
    return got_args


@pytest.mark.parametrize("name,fn,make", CASES, ids=[c[0] for c in CASES])
def test_writes_into_inputs_like_eager(name, fn, make):
    torch._dynamo.reset()
    torch.manual_seed(0)
    cm = qmlir.compile(FunctionModule(fn), tuple(a.clone() for a in make()))
    _call_and_compare(fn, cm, make)
    _call_and_compare(fn, cm, make)  # and again: nothing was cached from the first call's data


def test_the_dynamo_door_and_repeated_steps():
    """A decode-like loop: every call writes one more row into the same cache tensor."""
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(_kv_write, backend=qmlir.backend(strict=True), dynamic=False)
        cache, eager_cache = torch.zeros(1, 2, 8, 4), torch.zeros(1, 2, 8, 4)
        x = torch.randn(1, 2, 4)
        for step in range(8):
            kv = torch.randn(1, 2, 1, 4)
            pos = torch.tensor([step])
            got = compiled(cache, pos, kv, x)
            ref = _kv_write(eager_cache, pos, kv, x)
            torch.testing.assert_close(got, ref)
        torch.testing.assert_close(cache, eager_cache)


def test_the_cache_is_written_in_place_not_copied():
    """No copy of the whole cache: the bufferized IR writes one slice of the argument per index."""
    from qmlir.frontend.compiled_module import import_model
    from qmlir.passes.pipeline import Pipeline
    torch._dynamo.reset()
    graph = import_model(FunctionModule(_kv_write), (torch.zeros(1, 2, 8, 4), torch.tensor([3, 5]),
                                                     torch.randn(1, 2, 2, 4), torch.randn(1, 2, 4)))
    assert graph.mutated == (0,)
    Pipeline.parse("qmlir-protect-arguments,func.func(canonicalize,cse),qmlir-distinct-results,"
                   "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
                   "qmlir-drop-mutated-results,canonicalize").run(graph.module, "test")
    text = str(graph.module)
    lines = text.splitlines()
    assert not [x for x in lines if "memref.copy" in x and ": memref<1x2x8x4xf32> to" in x]  # no whole-cache copy
    assert not [x for x in lines if "memref.alloc" in x and "memref<1x2x8x4xf32>" in x]  # and no second cache
    assert "qmlir.mutated_results" not in text
    copies = [x for x in lines if "memref.copy" in x and "1x2x1x4xf32" in x]
    assert len(copies) == 1  # the one row per index, inside the loop


def test_non_contiguous_input_is_written_back():
    torch._dynamo.reset()
    make = lambda: (torch.zeros(1, 8, 2, 4).transpose(1, 2), torch.tensor([3, 5]),  # noqa: E731
                    torch.randn(1, 2, 2, 4), torch.randn(1, 2, 4))
    cm = qmlir.compile(FunctionModule(_kv_write), make())
    cache, pos, kv, x = make()
    ref_cache = cache.clone()
    ref = _kv_write(ref_cache, pos, kv, x)
    torch.testing.assert_close(cm(cache, pos, kv, x), ref)
    assert not cache.is_contiguous()
    torch.testing.assert_close(cache, ref_cache)


@pytest.mark.parametrize("bad", [8, -9, 10 ** 9])
def test_out_of_range_write_raises_and_writes_nothing_outside(bad):
    torch._dynamo.reset()
    guard = torch.zeros(3, 2, 8, 4)
    cache = guard[1:2]  # a view: its neighbours in storage must survive a bad index
    cm = qmlir.compile(FunctionModule(_kv_write), (torch.zeros(1, 2, 8, 4), torch.tensor([3]),
                                                   torch.randn(1, 2, 1, 4), torch.randn(1, 2, 4)))
    with pytest.raises(IndexError):
        _kv_write(torch.zeros(1, 2, 8, 4), torch.tensor([bad]), torch.randn(1, 2, 1, 4), torch.randn(1, 2, 4))
    with pytest.raises(qmlir.IndexOutOfRangeError, match=rf"index {bad} is out of bounds for dimension 2 with size 8"):
        cm(cache, torch.tensor([bad]), torch.ones(1, 2, 1, 4), torch.randn(1, 2, 4))
    assert torch.count_nonzero(guard[0]) == 0 and torch.count_nonzero(guard[2]) == 0


def test_only_mutated_inputs_are_writable_in_the_ir():
    from qmlir.frontend.compiled_module import import_model
    torch._dynamo.reset()
    graph = import_model(FunctionModule(_two_caches), CASES[-1][2]())
    text = graph.mlir
    head = text[text.index("func.func @forward("):].split("{\n")[0]
    assert head.count("bufferization.writable = true") == 2
    assert "qmlir.mutated_results = [" in head
    assert len(graph.mutated) == 2  # Dynamo orders the inputs by first use


def test_dynamic_graphs_specialize_per_shape():
    """torch.compile(dynamic=True) (symbolic sizes) compiles once per concrete shape, writes its
    inputs in place like a static graph, and reuses a shape's compiled graph."""
    graphs = []
    torch._dynamo.reset()

    def f(x, n):
        n.add_(1)
        return torch.softmax(x.view(x.shape[0], -1) * 2, -1)

    compiled = torch.compile(f, backend=qmlir.backend(strict=True, on_compile=graphs.append), dynamic=True)
    n, n_ref = torch.zeros(1), torch.zeros(1)
    with torch.no_grad():
        for rows in (3, 9, 3):
            x = torch.randn(rows, 2, 2)
            torch.testing.assert_close(compiled(x, n), f(x, n_ref))
    assert torch.equal(n, n_ref) and n.item() == 3
    assert len(graphs) == 2
    assert all(g.graph.tensor_inputs is not None for g in graphs)  # the size argument is not passed
