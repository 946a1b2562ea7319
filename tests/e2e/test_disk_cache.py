"""The on-disk cache of lowered modules: a second compile of the same IR skips the lowering
pipeline and computes the same result; other IR, other settings, or a broken entry miss."""
import torch

from qmlir.target import disk_cache
from qmlir.target import compile_mlir

SRC = """
func.func @f(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>) -> tensor<4x32xf32> {
  %z = arith.constant 0.0 : f32
  %et = tensor.empty() : tensor<64x32xf32>
  %t = linalg.transpose ins(%w : tensor<32x64xf32>) outs(%et : tensor<64x32xf32>) permutation = [1, 0]
  %e = tensor.empty() : tensor<4x32xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x32xf32>) -> tensor<4x32xf32>
  %y = linalg.matmul ins(%x, %t : tensor<4x64xf32>, tensor<64x32xf32>) outs(%f : tensor<4x32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}"""


def test_second_compile_hits_and_agrees(tmp_path, monkeypatch):
    """A second compile of the same IR skips the lowering (artifact cache) and LLVM (the machine
    code of the first load, kept as a shared library: qmlir/runtime/objects.py), and agrees."""
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    x, w = torch.randn(4, 64), torch.randn(32, 64)
    first = compile_mlir(SRC)
    assert not first.cache_hit and not first.object_hit
    assert len(list(tmp_path.glob("*.qmlir-artifact"))) == 1
    assert len(list(tmp_path.glob("*.qmlir-so"))) == 1
    second = compile_mlir(SRC)
    assert second.cache_hit and second.object_hit
    torch.testing.assert_close(second(x, w)[0], first(x, w)[0], rtol=0, atol=0)
    torch.testing.assert_close(second(x, w)[0], x @ w.T, rtol=1e-5, atol=1e-4)
    # other IR misses
    assert not compile_mlir(SRC.replace("%z = arith.constant 0.0", "%z = arith.constant 1.0")).cache_hit


def test_settings_are_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    compile_mlir(SRC)
    monkeypatch.setenv("QMLIR_NUM_THREADS", "1")
    assert not compile_mlir(SRC).cache_hit


def test_broken_entry_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    compile_mlir(SRC)
    (entry,) = tmp_path.glob("*.qmlir-artifact")
    entry.write_bytes(b"not bytecode")
    again = compile_mlir(SRC)
    assert not again.cache_hit
    assert compile_mlir(SRC).cache_hit  # rewritten


def test_off(tmp_path, monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", "off")
    assert disk_cache.cache_dir() is None
    assert not compile_mlir(SRC).cache_hit
    assert not compile_mlir(SRC).cache_hit


# ---- machine code (qmlir/runtime/objects.py) --------------------------------------------------

BIG = SRC.replace("4x64", "64x512").replace("32x64", "256x512").replace("64x32", "512x256") \
         .replace("4x32", "64x256")


def test_threaded_code_from_the_library(tmp_path, monkeypatch):
    """A function that runs on libgomp's threads works from the library too."""
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("QMLIR_NUM_THREADS", "2")
    x, w = torch.randn(64, 512), torch.randn(256, 512)
    first = compile_mlir(BIG)
    assert "gomp" in first.artifact.libraries and "async_runtime" not in first.artifact.libraries
    second = compile_mlir(BIG)
    assert second.object_hit
    for _ in range(3):
        assert torch.equal(second(x, w)[0], first(x, w)[0])


def test_broken_library_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    compile_mlir(SRC)
    (lib,) = tmp_path.glob("*.qmlir-so")
    lib.write_bytes(b"\x7fELF truncated")
    again = compile_mlir(SRC)
    assert again.cache_hit and not again.object_hit  # JIT-compiled again, the library rewritten
    x, w = torch.randn(4, 64), torch.randn(32, 64)
    torch.testing.assert_close(again(x, w)[0], x @ w.T, rtol=1e-5, atol=1e-4)
    assert compile_mlir(SRC).object_hit


def test_no_library_without_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", "off")
    monkeypatch.chdir(tmp_path)
    assert not compile_mlir(SRC).object_hit
    assert not compile_mlir(SRC).object_hit
    assert not list(tmp_path.rglob("*.qmlir-so"))
