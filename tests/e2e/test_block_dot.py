"""Block-dynamic W8A8 (`act_granularity=block`, llama.cpp's Q8_0 arithmetic): activation
quantization per block of columns, the panel layout of the weights, the block-scaled integer
matmul (qmlir/ir/block_matmul.py) and its kernel int8_block_dot (qmlir/kernels), on edge shapes
(M = 1/2/3/17, N tails padded to a panel, K padded to a block, groups and per channel, the
threaded split), int8 and int4 (W4A8) weights, against the eager reference and through the
portable door (kernel off)."""
import numpy as np
import pytest
import torch
from mlir import ir

import qmlir
from qmlir.ir.quant_ops import block_matmul_reference, quantize_blocks
from qmlir.ir.quant_storage import pack_panels, pack_panels_int4, unpack_panels
from qmlir.quantization import QuantConfig, QuantConfigError
from qmlir.quantization.linear import QuantizedLinear
from qmlir.target import host
from qmlir.target.kernel_choice import kernel_choices

PORTABLE = qmlir.Target.cpu(features=())
DOORS = {"target": None, "portable": PORTABLE, "avx2": qmlir.Target.cpu(features=("avx2",))}


def _door(name):
    if name == "avx2" and not host.has("avx2"):
        pytest.skip("this CPU has no AVX2")
    return DOORS[name]


def _layer(K, N, seed, **cfg):
    torch.manual_seed(seed)
    lin = torch.nn.Sequential(torch.nn.Linear(K, N))
    x = torch.randn(4, K) * torch.linspace(0.2, 3, K)
    config = QuantConfig(act_dtype="int8", act_granularity="block", skip=[], **cfg)
    return qmlir.quantize(lin, [x], config, progress=False)


CASES = [  # M, K, N, config
    (1, 576, 192, dict(weight_granularity="group", group_size=32)),
    (2, 64, 128, dict()),
    (3, 100, 64, dict(weight_granularity="group", group_size=32)),   # K padded to 128
    (17, 96, 80, dict(weight_granularity="group", group_size=64)),   # N tail: one panel of 64 + 16
    (5, 40, 1, dict(act_block=8)),                                   # one output column
    (4, 256, 256, dict(act_block=16, weight_granularity="group", group_size=128)),
    # W4A8 (nibble panels)
    (1, 576, 192, dict(weight_dtype="int4", weight_granularity="group", group_size=32)),
    (3, 100, 64, dict(weight_dtype="int4")),                          # K padded to 128
    (17, 96, 80, dict(weight_dtype="int4", act_block=16, weight_granularity="group", group_size=32)),
    (2, 40, 1, dict(weight_dtype="int4", act_block=8)),
]


@pytest.mark.parametrize("M,K,N,cfg", CASES, ids=[f"M{c[0]}-K{c[1]}-N{c[2]}-{c[3].get('weight_dtype', 'int8')}"
                                                  for c in CASES])
@pytest.mark.parametrize("door", DOORS)
def test_compiled_equals_eager_bit_for_bit(M, K, N, cfg, door):
    """Through the target's kernel (VNNI or AVX2), the AVX2 kernel alone and the portable path."""
    target = _door(door)
    q = _layer(K, N, seed=M * 1000 + K + N, **cfg)
    x = torch.randn(M, K) * 2
    x[0, :8] = 0.0  # a zero block (scale 1) when the block is 8
    compiled = qmlir.compile(q, (x,), target=target)
    with torch.no_grad():
        assert torch.equal(compiled(x), q(x))


def test_kernel_choice_follows_the_target_features():
    """VNNI where the target has it, else AVX2, else the portable generic (no kernel)."""
    q = _layer(64, 128, seed=0)
    graphs = []
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(q, backend=qmlir.backend(on_import=graphs.append))(torch.randn(2, 64))
    with graphs[0].module.context:
        text = str(graphs[0].module)
        choose = lambda *features: kernel_choices(ir.Module.parse(text), qmlir.Target.cpu(features=features))  # noqa: E731
        assert choose("avx2", "avx512_vnni") == ["int8_block_dot"]
        assert choose("avx512_vnni") == ["int8_block_dot"]
        assert choose("avx2") == ["int8_block_avx2"]
        assert choose() == []


@pytest.mark.parametrize("K,N,dtype", [(2048, 4096, "int8"), (4096, 4096, "int4")])
@pytest.mark.parametrize("features", [None, ("avx2",)], ids=["host", "avx2"])
def test_threaded_split_of_a_large_weight(K, N, dtype, features):
    """8 MB of weights: the columns split over two tasks; same numbers as eager."""
    if features and not all(host.has(f) for f in features):
        pytest.skip("this CPU lacks " + ",".join(features))
    q = _layer(K, N, seed=1, weight_dtype=dtype, weight_granularity="group", group_size=32)
    x = torch.randn(1, K)
    with torch.no_grad():
        assert torch.equal(qmlir.compile(q, (x,), target=qmlir.Target.cpu(features=features, threads=2))(x), q(x))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("door", DOORS)
def test_integer_part_is_exact(bits, door):
    """Unit scales (a 127 in every activation block; weights of scale 1) and integer inputs: the
    output is the integer product itself, -128 weights (GPTQ can make them) included."""
    target = _door(door)
    K, N, M = 64, 64, 3
    g = torch.Generator().manual_seed(bits)
    lo, hi = (-128, 128) if bits == 8 else (-8, 8)
    wq = torch.randint(lo, hi, (K, N), generator=g, dtype=torch.int8)
    x = torch.randint(-127, 128, (M, K), generator=g).to(torch.float32)
    x[:, ::32] = 127.0
    packed = pack_panels(wq) if bits == 8 else pack_panels_int4(wq)
    layer = QuantizedLinear(K, N, "w8a8_block", bits, 0, packed, torch.ones(N), act_block=32)
    expected = (x.to(torch.int64) @ wq.to(torch.int64)).to(torch.float32)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)
        assert torch.equal(qmlir.compile(layer, (x,), target=target)(x), expected)


def test_reference_against_float64():
    g = torch.Generator().manual_seed(2)
    xq = torch.randint(-127, 128, (3, 96), generator=g, dtype=torch.int8)
    wq = torch.randint(-128, 128, (96, 40), generator=g, dtype=torch.int8)
    sx = torch.rand(3, 3, generator=g) + 0.01
    sw = torch.rand(3, 40, generator=g) + 0.01
    y = block_matmul_reference(xq, sx, wq, sw, 32)
    ref = sum((xq[:, 32 * b:32 * b + 32].double() @ wq[32 * b:32 * b + 32].double())
              * (sx[:, b:b + 1].double() * sw[b][None, :].double()) for b in range(3))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6 * float(ref.abs().max()))


def test_block_quantization_rounds_half_to_even_and_saturates():
    x = torch.tensor([[127.0, 2.5, -3.5, 1.5, 0.0, 0.0, 0.0, 0.0]])
    q, s = quantize_blocks(x, 4)
    assert s.tolist() == [[1.0, 1.0]]  # amax 127 -> scale 1; a zero block -> scale 1
    assert q.tolist() == [[127, 2, -4, 2, 0, 0, 0, 0]]
    q, s = quantize_blocks(torch.tensor([[-254.0, 1.0, 0.0, 0.0]]), 4)
    assert q[0, 0] == -127 and s[0, 0] == 2.0


def test_panel_layout_round_trips():
    q = torch.randint(-128, 128, (12, 70), dtype=torch.int8)
    packed = pack_panels(q)
    assert packed.shape == (2, 3, 64, 4)
    assert packed[1, 2, 3, 1] == q[9, 67] and packed[1, 2, 10, 0] == 0  # column 74 is padding
    assert torch.equal(unpack_panels(packed, 70), q)
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_panels(q[:10])
    q4 = torch.randint(-8, 8, (16, 70), dtype=torch.int8)
    nib = pack_panels_int4(q4)
    assert nib.shape == (2, 2, 64, 4)
    byte = int(nib[1, 1, 3, 2]) & 0xFF
    assert (byte & 15) - 8 == q4[10, 67] and (byte >> 4) - 8 == q4[14, 67]
    assert torch.equal(unpack_panels(nib, 70, bits=4), q4)


def test_save_and_load_keep_the_layout(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 64))
    x = torch.randn(3, 64)
    q = qmlir.quantize(model, [x], "w8a8-block32", progress=False)
    path = qmlir.save_quantized(q, tmp_path / "q.safetensors")
    loaded = qmlir.load_quantized(model, path)
    assert loaded[0].mode == "w8a8_block" and loaded[0].act_block == 32
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))


def test_presets_fit_models_without_their_named_layers():
    """w4a8-block32 keeps lm_head in int8; a model without an lm_head takes the preset as is,
    while a user's own pattern that matches nothing stays an error."""
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    q = qmlir.quantize(model, [torch.randn(2, 64)], "w4a8-block32", progress=False)
    assert q[0].mode == "w8a8_block" and q[0].bits == 4
    own = QuantConfig(weight_dtype="int4", act_dtype="int8", act_granularity="block", weight_granularity="group",
                      group_size=32, skip=[], layers={"lm_head": {"weight_dtype": "int8"}})
    with pytest.raises(qmlir.QuantizationError, match="matches no linear layer"):
        qmlir.quantize(model, [torch.randn(2, 64)], own, progress=False)


def test_load_rejects_a_block_layer_without_its_block(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file
    import json
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    q = qmlir.quantize(model, [torch.randn(2, 64)], "w8a8-block32", progress=False)
    good = qmlir.save_quantized(q, tmp_path / "q.safetensors")
    with safe_open(str(good), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    layers = json.loads(meta["layers"])
    layers["0"]["act_block"] = 0
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "layers": json.dumps(layers)})
    with pytest.raises(qmlir.QuantizationError, match="metadata save_quantized does not write"):
        qmlir.load_quantized(model, tmp_path / "bad.safetensors")


@pytest.mark.parametrize("cfg,message", [
    (dict(act_block=6), "multiple of 4"),
    (dict(act_block=16), "has no effect"),
    (dict(weight_granularity="group", group_size=48), "multiple of act_block=32"),
    (dict(weight_granularity="tensor"), "per-channel or grouped"),
    (dict(weight_dtype="int4", act_block=4), "multiple of 8"),
])
def test_config_errors(cfg, message):
    gran = {} if cfg.get("act_block") == 16 else {"act_granularity": "block"}
    with pytest.raises(QuantConfigError, match=message):
        QuantConfig(act_dtype="int8", **gran, **cfg)
