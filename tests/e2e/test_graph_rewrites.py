"""Graph rewrites before import (qmlir/frontend/graph_rewrites.py): grouped-query attention's
repeated keys and values are not materialized, and attention scales its scores instead of a
transposed copy of the keys; the results stay eager's."""
import re

import pytest
import torch
import torch.nn.functional as F

import qmlir
from qmlir.frontend import dynamo_backend
from qmlir.testing import FunctionModule


def repeat_kv(x, rep):
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, rep, s, d).reshape(b, h * rep, s, d)


def gqa(q, k, v, mask):
    rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), attn_mask=mask)


def gqa_reused(q, k, v, mask):
    kr = repeat_kv(k, q.shape[1] // k.shape[1])
    return F.scaled_dot_product_attention(q, kr, kr, attn_mask=mask) + kr.mean()  # the repeat is used twice


def _inputs(m, heads=6, kv_heads=2, s=40, d=16):
    g = torch.Generator().manual_seed(m)
    q = torch.randn(1, heads, m, d, generator=g)
    k, v = torch.randn(1, kv_heads, s, d, generator=g), torch.randn(1, kv_heads, s, d, generator=g)
    mask = torch.rand(1, 1, m, s, generator=g) > 0.2
    mask[..., 0] = True
    return q, k, v, mask


@pytest.fixture
def rewrites(monkeypatch):
    counts = []
    real = dynamo_backend.fold_repeated_kv
    monkeypatch.setattr(dynamo_backend, "fold_repeated_kv", lambda gm: counts.append(real(gm)) or counts[-1])
    return counts


@pytest.mark.parametrize("m", [1, 3, 17])
def test_gqa_attention_reads_kv_heads_once(m, rewrites):
    torch._dynamo.reset()
    args = _inputs(m)
    cm = qmlir.compile(FunctionModule(gqa), args)
    torch.testing.assert_close(cm(*args), gqa(*args), rtol=1e-5, atol=1e-5)
    assert rewrites == [2]  # keys and values
    assert "tensor<1x2x3x40x16xf32>" not in cm.mlir  # no repeated copy of the keys or values
    assert f"tensor<2x{3 * m}x16xf32>" in cm.mlir  # the query heads of a group stacked as rows


def test_a_repeat_used_elsewhere_is_left_alone(rewrites):
    torch._dynamo.reset()
    args = _inputs(2)
    cm = qmlir.compile(FunctionModule(gqa_reused), args)
    torch.testing.assert_close(cm(*args), gqa_reused(*args), rtol=1e-5, atol=1e-5)
    assert rewrites == [0]


def test_llama_decode_with_gqa(rewrites):
    import transformers
    torch._dynamo.reset()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(2))
    kw = dict(max_new_tokens=8, do_sample=False, cache_implementation="static", output_logits=True,
              return_dict_in_generate=True)
    with torch.no_grad():
        ref = model.generate(ids, **kw)
        model.forward = torch.compile(model.forward, backend=qmlir.backend(strict=True))
        out = model.generate(ids, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(torch.cat(out.logits), torch.cat(ref.logits), rtol=1e-4, atol=1e-4)
    assert rewrites == [4, 4]  # prefill and decode: keys and values of both layers


@pytest.fixture
def scale_rewrites(monkeypatch):
    counts = []
    real = dynamo_backend.scale_scores_not_keys
    monkeypatch.setattr(dynamo_backend, "scale_scores_not_keys", lambda gm: counts.append(real(gm)) or counts[-1])
    return counts


def mha(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("fn,kv_heads", [(mha, 6), (gqa, 2)], ids=["mha", "gqa"])
def test_attention_scales_scores_not_keys(fn, kv_heads, scale_rewrites):
    """The key side of the decomposed attention is a transpose feeding the batched matmul
    (folded into its operand layout by the CPU pipeline), with no scaled copy of the keys;
    the scores are scaled instead."""
    torch._dynamo.reset()
    args = _inputs(3, kv_heads=kv_heads)
    cm = qmlir.compile(FunctionModule(fn), args)
    torch.testing.assert_close(cm(*args), fn(*args), rtol=1e-5, atol=1e-5)
    assert scale_rewrites == [1]
    bmm = re.search(r"linalg.batch_matmul ins\(%\S+, (%\S+) :", cm.mlir)
    assert bmm is not None and bmm.group(1).startswith("%transposed")
    assert not re.search(r"linalg.generic .*ins\(%transposed", cm.mlir)  # nothing scales the transposed keys
