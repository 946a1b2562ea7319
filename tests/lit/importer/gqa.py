# RUN: %python %s | FileCheck %s
# Grouped-query attention (6 query heads, 2 key/value heads): the repeated keys and values are
# not materialized; each batched matmul takes the 2 key/value heads with the 3 query heads of a
# group stacked as rows (qmlir/frontend/graph_rewrites.py).
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir


def repeat_kv(x, rep):
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, rep, s, d).reshape(b, h * rep, s, d)


def gqa(q, k, v):
    return F.scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3))


# CHECK-LABEL: // gqa
# CHECK-NOT: tensor<1x2x3x40x16xf32>
# CHECK: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<2x3x16xf32>, tensor<2x16x40xf32>) outs(%{{.+}} : tensor<2x3x40xf32>)
# CHECK-NOT: tensor<1x2x3x40x16xf32>
# CHECK: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<2x3x40xf32>, tensor<2x40x16xf32>) outs(%{{.+}} : tensor<2x3x16xf32>)
print_ir(gqa, torch.randn(1, 6, 1, 16), torch.randn(1, 2, 40, 16), torch.randn(1, 2, 40, 16), title="gqa")
