"""Threaded loops on libgomp's team (qmlir-forall-to-gomp): every trip of a forall runs exactly
once, on any trip count and thread count, with its captured values (tensors, an index, a float)
intact; the kernels that split their weights over threads give eager's numbers."""
import pytest
import torch

import qmlir
from qmlir.target import compile_mlir

# rows r of x -> (x[r] * s + n) * (r + 1): one trip per row, laid out as a (R / 5) x 5 forall
SRC = """
func.func @f(%x: tensor<ROWSx8xf32>, %s: tensor<f32>, %n: tensor<i64>) -> tensor<ROWSx8xf32> {
  %e = tensor.empty() : tensor<ROWSx8xf32>
  %sv = tensor.extract %s[] : tensor<f32>
  %ni = tensor.extract %n[] : tensor<i64>
  %nf = arith.sitofp %ni : i64 to f32
  %r = scf.forall (%i, %j) in (OUTER, 5) shared_outs(%o = %e) -> tensor<ROWSx8xf32> {
    %row = affine.apply affine_map<(d0, d1) -> (d0 * 5 + d1)>(%i, %j)
    %xs = tensor.extract_slice %x[%row, 0] [1, 8] [1, 1] : tensor<ROWSx8xf32> to tensor<1x8xf32>
    %os = tensor.extract_slice %o[%row, 0] [1, 8] [1, 1] : tensor<ROWSx8xf32> to tensor<1x8xf32>
    %ri = arith.index_cast %row : index to i64
    %rf = arith.sitofp %ri : i64 to f32
    %one = arith.constant 1.0 : f32
    %k = arith.addf %rf, %one : f32
    %y = linalg.generic {indexing_maps = [affine_map<(a, b) -> (a, b)>, affine_map<(a, b) -> (a, b)>],
                         iterator_types = ["parallel", "parallel"]}
        ins(%xs : tensor<1x8xf32>) outs(%os : tensor<1x8xf32>) {
    ^bb0(%v: f32, %unused: f32):
      %a = arith.mulf %v, %sv : f32
      %b = arith.addf %a, %nf : f32
      %c = arith.mulf %b, %k : f32
      linalg.yield %c : f32
    } -> tensor<1x8xf32>
    scf.forall.in_parallel {
      tensor.parallel_insert_slice %y into %o[%row, 0] [1, 8] [1, 1] : tensor<1x8xf32> into tensor<ROWSx8xf32>
    }
  }
  return %r : tensor<ROWSx8xf32>
}"""


@pytest.mark.parametrize("outer", [1, 3, 4])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_trip_runs_once(outer, threads):
    rows = outer * 5
    fn = compile_mlir(SRC.replace("ROWS", str(rows)).replace("OUTER", str(outer)),
                      target=qmlir.Target.cpu(features=(), threads=threads))
    assert ("gomp" in fn.artifact.libraries) == (threads > 1)
    x = torch.randn(rows, 8)
    s, n = torch.tensor(0.5), torch.tensor(3)
    expected = (x * 0.5 + 3) * torch.arange(1, rows + 1, dtype=torch.float32)[:, None]
    for _ in range(3):  # the team is reused from call to call
        assert torch.equal(fn(x, s, n)[0], expected)


@pytest.mark.parametrize("preset,K,N", [("w8a8-block32", 576, 576), ("w8a8-block32", 256, 192),
                                        ("w4a8-block32", 576, 1536), ("int8-weight-only", 576, 576), ("int4-g128", 512, 320)])
@pytest.mark.parametrize("M", [1, 3])
def test_threaded_kernels_on_uneven_splits(preset, K, N, M, monkeypatch):
    """Panels that do not divide by the threads (576 columns: 9 panels over 2) split 5 + 4 and
    give the one-thread result exactly."""
    from qmlir.kernels import dequant_gemm, int8_block_dot
    monkeypatch.setattr(int8_block_dot, "_MIN_THREAD_BYTES", 0)
    monkeypatch.setattr(dequant_gemm, "_MIN_THREAD_BYTES", 0)
    torch.manual_seed(K + N)
    lin = torch.nn.Sequential(torch.nn.Linear(K, N, bias=False))
    q = qmlir.quantize(lin, [torch.randn(8, K)], preset, progress=False)
    x = torch.randn(M, K)
    with torch.no_grad():
        one = qmlir.compile(q, (x,), target=qmlir.Target.cpu(threads=1))(x)
        two = qmlir.compile(q, (x,), target=qmlir.Target.cpu(threads=2))(x)
        assert torch.equal(two, one)
        torch.testing.assert_close(two, q(x), rtol=1e-5, atol=1e-5)
