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
    monkeypatch.setenv("QMLIR_CACHE_DIR", str(tmp_path))
    x, w = torch.randn(4, 64), torch.randn(32, 64)
    first = compile_mlir(SRC)
    assert not first.cache_hit
    assert len(list(tmp_path.glob("*.qmlir-artifact"))) == 1
    second = compile_mlir(SRC)
    assert second.cache_hit
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
