"""The row_reduce kernel (qmlir/kernels/row_reduce.py): last-dimension reductions in 16 lanes,
against torch, on rows the kernel takes (multiples of 16) and rows it leaves to the scalar
loops; and the same graph with the kernel switched off."""
import dataclasses

import pytest
import torch

import qmlir
from qmlir.kernels import base as kernel_base
from qmlir.kernels import row_reduce
from qmlir.testing import FunctionModule

CASES = {
    "softmax": lambda x: torch.softmax(x, -1),
    "sum": lambda x: x.sum(-1),
    "amax": lambda x: x.amax(-1),
    "amin_keepdim": lambda x: x.amin(-1, keepdim=True),
    "any": lambda x: (x > 2.5).any(-1),
    "rmsnorm": lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6),
    "masked_softmax": lambda x: torch.softmax(x.masked_fill(x > 1.0, float("-inf")), -1),
}


def _taken(fn, x) -> int:
    chosen = []
    real = row_reduce.KERNEL.expand
    off = dataclasses.replace(row_reduce.KERNEL, expand=lambda m, c: chosen.append(len(c)) or real(m, c))
    kernel_base._KERNELS["row_reduce"] = off
    try:
        cm = qmlir.compile(FunctionModule(fn), (x,))
        out = cm(x)
    finally:
        kernel_base._KERNELS["row_reduce"] = row_reduce.KERNEL
    return out, sum(chosen)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shape", [(2, 3, 640), (5, 48), (3, 40)], ids=["640", "48", "40-scalar"])
def test_row_reductions_match_torch(monkeypatch, name, shape):
    monkeypatch.setenv("QMLIR_CACHE_DIR", "off")  # compiled here, so the expansion is seen
    fn = CASES[name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape) + shape[-1]))
    out, taken = _taken(fn, x)
    ref = fn(x)
    if ref.dtype == torch.bool:
        assert torch.equal(out, ref)
    else:
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (taken > 0) == (shape[-1] % 16 == 0)


def test_kernel_off_gives_the_same(monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", "off")
    x = torch.randn(4, 9, 160, generator=torch.Generator().manual_seed(5))
    fn = CASES["softmax"]
    fast = qmlir.compile(FunctionModule(fn), (x,))(x)
    monkeypatch.setitem(kernel_base._KERNELS, "row_reduce",
                        dataclasses.replace(row_reduce.KERNEL, select=lambda op, threads: None))
    slow = qmlir.compile(FunctionModule(fn), (x,))(x)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)
