"""qmlir's cuda target against PyTorch CUDA eager, side by side on one GPU.

Prints, per case, the median time of eager and of qmlir (each call synchronized) and the ratio
eager / qmlir (above 1: qmlir is faster). Cases: a bf16 linear 4096x4096 at M=128, the int8
GEMM core of a quantized linear (i8 x i8 -> i32, against torch._int_mm), and a SmolLM2-135M
prefill of 128 tokens (SmolLM2's architecture and sizes; random weights, so that the GPU
machine needs no model package). Writes JSON to the path given as the first argument, if any.

    python benchmarks/bench_cuda.py [results.json]
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import torch

import qmlir
from qmlir.target import compile_mlir


def median_seconds(fn, reps: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def linear_bf16(m: int = 128, k: int = 4096, n: int = 4096):
    model = torch.nn.Linear(k, n, bias=False).to("cuda", torch.bfloat16).eval()
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    cm = qmlir.compile(model, (x,), target="cuda")
    with torch.no_grad():
        err = (cm(x).float() - model(x).float()).abs().max().item()
    return (lambda: model(x)), (lambda: cm(x)), f"max |diff| vs eager {err:.3g}"


INT8_GEMM = """
func.func @int8_gemm(%x: tensor<{m}x{k}xi8>, %w: tensor<{k}x{n}xi8>) -> tensor<{m}x{n}xi32> {{
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<{m}x{n}xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<{m}x{n}xi32>) -> tensor<{m}x{n}xi32>
  %y = linalg.matmul ins(%x, %w : tensor<{m}x{k}xi8>, tensor<{k}x{n}xi8>) outs(%f : tensor<{m}x{n}xi32>) -> tensor<{m}x{n}xi32>
  return %y : tensor<{m}x{n}xi32>
}}"""


def int8_gemm(m: int = 128, k: int = 4096, n: int = 4096):
    x = torch.randint(-128, 128, (m, k), device="cuda", dtype=torch.int8)
    w = torch.randint(-128, 128, (k, n), device="cuda", dtype=torch.int8)
    fn = compile_mlir(INT8_GEMM.format(m=m, k=k, n=n), target="cuda")
    exact = torch.equal(fn(x, w)[0], torch._int_mm(x, w))
    return (lambda: torch._int_mm(x, w)), (lambda: fn(x, w)), f"equal to torch._int_mm: {exact}"


def smollm2_prefill(dtype: torch.dtype, tokens: int = 128):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, attn_implementation="eager",
                      rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to("cuda", dtype).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, tokens), device="cuda")
    t0 = time.perf_counter()
    cm = qmlir.compile(model, (ids,), dict(use_cache=False), target="cuda")
    compile_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits.float()
        err = (cm(ids, use_cache=False).logits.float() - ref).abs().max().item()
    return ((lambda: model(ids, use_cache=False)), (lambda: cm(ids, use_cache=False)),
            f"compile {compile_s:.1f} s, max |logit diff| vs eager {err:.3g}")


CASES = {
    "linear 4096x4096, M=128, bf16": linear_bf16,
    "int8 GEMM 4096x4096, M=128 (i8 x i8 -> i32)": int8_gemm,
    "SmolLM2-135M prefill, 128 tokens, f32": lambda: smollm2_prefill(torch.float32),
    "SmolLM2-135M prefill, 128 tokens, bf16": lambda: smollm2_prefill(torch.bfloat16),
}


def main() -> None:
    results = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, make in CASES.items():
        with torch.no_grad():
            eager, compiled, note = make()
            t_eager = median_seconds(eager)
            t_qmlir = median_seconds(compiled)
        results.append(dict(case=name, eager_ms=t_eager * 1e3, qmlir_ms=t_qmlir * 1e3,
                            ratio=t_eager / t_qmlir, note=note))
        print(f"{name:48s} eager {t_eager * 1e3:9.3f} ms  qmlir {t_qmlir * 1e3:9.3f} ms  "
              f"ratio {t_eager / t_qmlir:7.4f}x  ({note})", flush=True)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, results=results), f, indent=1)


if __name__ == "__main__":
    main()
