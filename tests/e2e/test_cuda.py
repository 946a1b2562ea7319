"""The cuda target. Without a GPU (CI): every op family of the numeric suite, quantized IR and a
Llama graph lower to PTX, and the API's errors are typed. With one (tests marked `cuda`, skipped
otherwise): the same cases run on the device and match PyTorch eager."""
import re

import numpy as np
import pytest
import torch
from mlir import ir

import qmlir
import test_ops as ops
from conftest import assert_close, seed_of
from test_quant_passes import absmax_attrs, matmul_module
from qmlir.passes import fuse_quantized_matmul, quantize_matmul
from qmlir.target import Target, compile_mlir

CUDA_PTX = Target.cuda(chip="sm_90", features="+ptx80")  # PTX for sm_90 whatever GPU is (or is not) here


def lower_to_cuda(module: ir.Module):
    """The cuda target's artifact for `module` (its extras: device buffers, PTX)."""
    return CUDA_PTX.compile(str(module))

HAS_CUDA = torch.cuda.is_available()
on_cuda = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]

# (id, fn, args) for every case of the CPU numeric suite: floats in f32 and bf16, the exact
# (integer/bool) cases, shapes, and the CNN ops.
CASES = ([(f"{n}-f32", f, m, torch.float32) for n, f, m in ops.FLOAT_CASES]
         + [(f"{n}-bf16", f, m, torch.bfloat16) for n, f, m in ops.FLOAT_CASES]
         + [(n, f, m, None) for n, f, m in ops.EXACT_CASES]
         + [(f"{n}-f32", f, m, torch.float32) for n, f, m in ops.SHAPE_CASES]
         + [(f"{n}-f32", f, m, torch.float32) for n, f, m in ops.CNN_CASES])


def make_args(name, make, dtype):
    torch.manual_seed(seed_of(name))
    return make(dtype) if dtype is not None else make()


# The writes (index_put, scatter, index_copy) lower to loops on the host that the CUDA target
# does not map to the GPU yet: a clear CompileError, never code that touches device memory from
# the host.
NOT_ON_CUDA = {"index_put", "index_put_accumulate", "index_copy", "scatter", "scatter_value", "scatter_add"}


@pytest.mark.parametrize("name,fn,make,dtype", CASES, ids=[c[0] for c in CASES])
def test_every_op_lowers_to_ptx(name, fn, make, dtype):
    if name in NOT_ON_CUDA:
        with pytest.raises(qmlir.CompileError, match="not supported on the CUDA target yet"):
            qmlir.compile(ops.Fn(fn), make_args(name, make, dtype), target="cuda", emit="ptx")
        return
    ptx = qmlir.compile(ops.Fn(fn), make_args(name, make, dtype), target="cuda", emit="ptx")
    assert ".target sm_90" in ptx
    kernels = ptx.count(".visible .entry")
    assert kernels >= 1
    assert ptx.count(".maxntid") == kernels  # every kernel carries its launch bound
    assert "st.global" in ptx  # and writes device memory
    assert ".extern .func" not in ptx  # math is inlined: loads without libdevice or a CUDA toolkit


def quantized_module(w: np.ndarray) -> ir.Module:
    """W8A8 with dynamic per-token activations, fused to i8 x i8 -> i32 (not yet lowered)."""
    module = ir.Module.parse(matmul_module(w))
    assert quantize_matmul.run(module, act="dynamic") == 1
    fuse_quantized_matmul.run(module)
    return module


def test_quantized_ir_lowers_to_ptx():
    """Quantized IR (int8 storage, i32 accumulation; any quant casts lowered inside the pipeline):
    the weight becomes an uploaded constant, kernels load bytes and accumulate in 32 bits."""
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    with ir.Context(), ir.Location.unknown():
        module = quantized_module(w)
        assert "tensor<32x64xi8>, tensor<64x32xi8>) outs(" in str(module)  # i8 x i8 -> i32 matmul
        lowering = lower_to_cuda(module)
    constant_bytes, _workspace = lowering.extras["buffers"]
    assert constant_bytes >= 64 * 32  # the i8 weight
    ptx = lowering.extras["ptx"]
    assert "ld.global.s8" in ptx or "ld.global.u8" in ptx or "ld.global.nc.u8" in ptx or "ld.global.nc.s8" in ptx
    assert re.search(r"\b(mad|mul)\.(lo|wide)\.s(16|32)\b", ptx)  # integer products, not float
    assert ".visible .entry" in ptx


# The MLIR-level quantization passes (test_quant_passes checks them on the CPU), then the cuda
# pipeline: (pipeline, SQNR bound in dB against the f64 matmul on data with planted activation
# outliers). The bounds are the CPU pipeline's SQNR on the same data, less 1 dB.
QUANT_PIPELINES = [
    ("qmlir-quantize-matmul{act=static}", 23.5),
    ("qmlir-quantize-matmul{act=dynamic}, qmlir-fuse-quantized-matmul", 29.3),
    ("qmlir-quantize-matmul{act=none weight-type=i4 granularity=group group-size=32}", 19.7),
    ("qmlir-split-outliers{threshold=6.0 mode=static}, qmlir-fuse-quantized-matmul", 53.2),
    ("qmlir-split-outliers{threshold=6.0 mode=dynamic}", 55.0),
    ("qmlir-mixed-precision{type=bf16}", 51.8),
]


def outlier_data():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((256, 64)) * 0.05).astype(np.float32)
    x = rng.standard_normal((32, 256)).astype(np.float32)
    x[:, [7, 100, 201, 230]] *= np.array([20.0, 35.0, 50.0, 60.0], np.float32)
    return w, x


def quant_pipeline_module(pipeline: str) -> ir.Module:
    from qmlir.passes.pipeline import apply_pipeline
    w, x = outlier_data()
    module = ir.Module.parse(matmul_module(w, absmax_attrs(x)))
    apply_pipeline(module, pipeline)
    return module


@pytest.mark.parametrize("pipeline,bound", QUANT_PIPELINES, ids=[p for p, _ in QUANT_PIPELINES])
def test_quantization_pipelines_lower_to_ptx(pipeline, bound):
    with ir.Context(), ir.Location.unknown():
        ptx = lower_to_cuda(quant_pipeline_module(pipeline)).extras["ptx"]
    assert ".visible .entry" in ptx and ".target sm_90" in ptx


@pytest.mark.parametrize("pipeline,bound", QUANT_PIPELINES, ids=[p for p, _ in QUANT_PIPELINES])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_quantization_pipelines_on_cuda(pipeline, bound):
    w, x = outlier_data()
    with ir.Context(), ir.Location.unknown():
        y = compile_mlir(str(quant_pipeline_module(pipeline)), target="cuda")(torch.from_numpy(x).cuda())[0].cpu().double()
    ref = torch.from_numpy(x).double() @ torch.from_numpy(w).double()
    sqnr = 10 * torch.log10((ref ** 2).sum() / ((y - ref) ** 2).sum())
    assert sqnr >= bound, sqnr


def small_llama(layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      attn_implementation="eager")  # CUDA SDPA decomposes to fused kernels qmlir lacks
    return LlamaForCausalLM(cfg).eval()


BLOCK_PRESETS = ["w8a8-block32", "w4a8-block32"]


def _block_layer(preset):
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(96, 80))
    x = torch.randn(3, 96)
    return qmlir.quantize(lin, [x], preset, progress=False), x


@pytest.mark.parametrize("preset", BLOCK_PRESETS)
def test_block_dynamic_layers_lower_to_ptx(preset):
    """The block-dynamic layers (the block matmul generic on panel weights) lower to kernels
    with integer products."""
    q, x = _block_layer(preset)
    ptx = qmlir.compile(q, (x,), target="cuda", emit="ptx")
    assert ".visible .entry" in ptx and re.search(r"\b(mad|mul)\.(lo|wide)\.s(16|32)\b", ptx)


@pytest.mark.parametrize("preset", BLOCK_PRESETS)
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_block_dynamic_layers_on_cuda(preset):
    q, x = _block_layer(preset)
    with torch.no_grad():
        y = qmlir.compile(q, (x.cuda(),), target="cuda")(x.cuda()).cpu()
        ref = q(x)
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))


def test_llama_graph_lowers_to_ptx():
    """A whole Llama graph (SmolLM2's architecture, random weights, small): embedding gather,
    RMSNorm, rotary embeddings, GQA attention with a causal mask, SiLU MLP, LM head."""
    model = small_llama()
    ids = torch.randint(0, 512, (1, 16))
    ptx = qmlir.compile(model, (ids,), dict(use_cache=False), target="cuda", emit="ptx")
    assert ptx.count(".visible .entry") > 30


def test_qmlir_opt_pipeline_option_errors():
    from qmlir.passes.registry import PassOptionError, lookup_pipeline
    spec = lookup_pipeline("qmlir-lower-to-cuda")
    assert spec.parse_options("chip=sm_80 features=+ptx80")["chip"] == "sm_80"
    with pytest.raises(PassOptionError, match="format"):
        spec.parse_options("format=cubin")


def test_emit_needs_cuda_target():
    with pytest.raises(qmlir.QmlirError, match="emit='ptx'"):
        qmlir.compile(ops.Fn(torch.relu), (torch.randn(4),), emit="ptx")
    with pytest.raises(qmlir.QmlirError, match="unknown target 'tpu'"):
        qmlir.backend(target="tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")
def test_no_cuda_device_is_a_typed_error():
    with pytest.raises(qmlir.CudaUnavailableError, match="emit='ptx'"):
        qmlir.compile(ops.Fn(torch.relu), (torch.randn(4),), target="cuda")
    with pytest.raises(qmlir.CudaUnavailableError):  # not a silent eager run at every call
        qmlir.backend(target="cuda")


# ---------------------------------------------------------------- on a CUDA device


CPU_FACTORY_CASES = {"arange", "arange_forms", "arange_float"}


def to_cuda(args):
    return tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("name,fn,make,dtype", CASES, ids=[c[0] for c in CASES])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_every_op_on_cuda(name, fn, make, dtype):
    if name in CPU_FACTORY_CASES:
        pytest.skip("the case adds a tensor it creates on the CPU (torch.arange without device=) to a CUDA "
                    "tensor; Dynamo rejects mixing devices before qmlir sees a graph")
    args = make_args(name, make, dtype)
    with torch.no_grad():
        ref = fn(*args)  # PyTorch's CPU kernels: the reference of the CPU suite's tolerances
    with torch.device("cuda"):  # tensors the case creates (arange, full, ...) live on the GPU too
        cm = qmlir.compile(ops.Fn(fn), to_cuda(args), target="cuda")
        out = cm(*to_cuda(args))
    outs = out if isinstance(out, (tuple, list)) else [out]
    assert all(o.device.type == "cuda" for o in outs)
    assert_close(type(ref)(o.cpu() for o in out) if isinstance(ref, (tuple, list)) else out.cpu(), ref)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_quantized_matmul_on_cuda():
    """W8A8 (dynamic per-token activations, i8 x i8 -> i32) on CUDA: as accurate as the CPU
    pipeline's (test_quant_passes bounds the same configuration at 30 dB against f32)."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((256, 64)) * 0.05).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((32, 256)).astype(np.float32))
    with ir.Context(), ir.Location.unknown():
        y = compile_mlir(str(quantized_module(w)), target="cuda")(x.cuda())[0].cpu().double()
    ref = (x @ torch.from_numpy(w)).double()
    sqnr = 10 * torch.log10((ref ** 2).sum() / ((y - ref) ** 2).sum())
    assert sqnr >= 30.0, sqnr


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_llama_logits_on_cuda(dtype):
    model = small_llama().to(device="cuda", dtype=dtype)
    ids = torch.randint(0, 512, (1, 32), device="cuda")
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits.float()
    cm = qmlir.compile(model, (ids,), dict(use_cache=False), target="cuda")
    out = cm(ids, use_cache=False).logits.float()
    tol = 1e-3 if dtype == torch.float32 else 0.1
    assert (out - ref).abs().max().item() < tol * max(1.0, ref.abs().max().item())


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_torch_compile_backend_on_cuda():
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.LayerNorm(64)).cuda().eval()
    x = torch.randn(8, 32, device="cuda")
    graphs = []
    compiled = torch.compile(model, backend=qmlir.backend(strict=True, target="cuda", on_compile=graphs.append))
    with torch.no_grad():
        out = compiled(x)
        ref = model(x)
    assert len(graphs) == 1 and out.device.type == "cuda"
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_constants_are_uploaded_and_inputs_checked():
    class WithConstant(torch.nn.Module):
        def forward(self, x):
            return x * torch.tensor([1.0, 2.0, 3.0, 4.0], device=x.device) + 0.5

    x = torch.randn(3, 4, device="cuda")
    cm = qmlir.compile(WithConstant(), (x,), target="cuda")
    torch.testing.assert_close(cm(x), WithConstant()(x))
    with pytest.raises(qmlir.InputMismatchError):
        cm(x.cpu())
    with pytest.raises(qmlir.InputMismatchError, match="CUDA tensors"):
        qmlir.compile(WithConstant(), (x.cpu(),), target="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_results_follow_torch_stream_order():
    """Work queued by torch before the call is seen, and torch work after it sees the results."""
    model = ops.Fn(lambda a: a * 2.0)
    x = torch.zeros(1 << 20, device="cuda")
    cm = qmlir.compile(model, (x,), target="cuda")
    big = torch.randn(2048, 2048, device="cuda")
    for _ in range(3):
        big = big @ big.T / 2048  # keep the stream busy
    x.fill_(1.0)  # queued after the matmuls on torch's stream
    out = cm(x)
    assert float(out.sum() / out.numel()) == 2.0
