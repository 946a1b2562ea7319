import os
import zlib
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
# Under pytest-xdist (`make test` runs two workers on two cores) each worker gets one thread, so
# that torch's spinning threads do not fight over the cores; alone, a run uses both.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def seed_of(name: str) -> int:
    """A per-test seed that is the same in every process (str hashes are salted)."""
    return zlib.crc32(name.encode())

# One ulp of the format at the result's magnitude: qmlir computes bf16/f16 elementwise math in
# f32 and rounds once, as PyTorch's CPU kernels do, so results are equal or one rounding apart
# (f32 transcendental implementations differ in the last bit; sums accumulate in another order).
RTOL = {torch.float32: 1e-5, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10, torch.float64: 1e-12}
# An absolute floor for results that cancel to near zero (a sum of K products carries an error
# of about K * eps * max|a*b| whatever the order; PyTorch's own kernels sum in another order).
ATOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3, torch.float64: 1e-12}


def assert_close(out, ref, dtype=None):
    if isinstance(ref, (tuple, list)):
        assert len(out) == len(ref)
        for o, r in zip(out, ref):
            assert_close(o, r, dtype)
        return
    assert out.dtype == ref.dtype, f"dtype {out.dtype} != {ref.dtype}"
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
    if not ref.dtype.is_floating_point:
        assert torch.equal(out, ref), f"integer/bool results differ:\n{out}\n{ref}"
        return
    dtype = dtype or ref.dtype
    torch.testing.assert_close(out, ref, rtol=RTOL[dtype], atol=ATOL[dtype], equal_nan=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: minutes of CPU; collected first, so that under pytest-xdist "
                                       "their files are handed out first and the workers finish together")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
