"""The CPU pipeline on IR that qmlir-opt / qmlir-run users may write by hand."""
import os

import pytest
import torch

from qmlir.target import compile_mlir


def test_transposed_matmul_layout_runs_on_the_safe_path():
    """linalg.matmul with transposed-B indexing maps and a long K (it crashed when tiled)."""
    src = """
#a = affine_map<(m, n, k) -> (m, k)>
#b = affine_map<(m, n, k) -> (n, k)>
#c = affine_map<(m, n, k) -> (m, n)>
func.func @f(%x: tensor<16x4096xf32>, %w: tensor<64x4096xf32>) -> tensor<16x64xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x64xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<16x64xf32>) -> tensor<16x64xf32>
  %m = linalg.matmul indexing_maps = [#a, #b, #c] ins(%x, %w : tensor<16x4096xf32>, tensor<64x4096xf32>)
         outs(%f : tensor<16x64xf32>) -> tensor<16x64xf32>
  return %m : tensor<16x64xf32>
}"""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(16, 4096, generator=g), torch.randn(64, 4096, generator=g)
    out = compile_mlir(src)(x, w)[0]
    torch.testing.assert_close(out, x @ w.T, rtol=1e-4, atol=1e-3)


def test_freed_memory_is_kept_for_the_next_call():
    """qmlir/runtime/cpu.py tells glibc's malloc to keep freed blocks (compiled functions
    allocate their intermediates per call); QMLIR_KEEP_MEMORY=0 leaves malloc alone."""
    import platform
    import subprocess
    import sys
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = ("import torch, qmlir; from qmlir.runtime import cpu; "
            "f = qmlir.compile(torch.nn.Linear(4, 4), (torch.randn(2, 4),)); print(cpu.keep_freed_memory())")
    for env, want in (({}, "True"), ({"QMLIR_KEEP_MEMORY": "0"}, "False")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == want
