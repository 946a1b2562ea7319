# RUN: %python %s | FileCheck %s
# Layer norm: two-pass mean and variance; batch norm (eval): a per-channel affine map.
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // layer_norm
# CHECK-COUNT-2: iterator_types = ["parallel", "parallel", "reduction"]
# CHECK: math.rsqrt
# CHECK: return %{{.+}} : tensor<2x3x8xf32>
print_ir(lambda a, w, b: F.layer_norm(a, (8,), w, b), torch.randn(2, 3, 8), torch.randn(8), torch.randn(8),
         title="layer_norm")

# CHECK-LABEL: // batch_norm
# CHECK: #[[CH:.+]] = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
# CHECK: tensor.expand_shape %{{.+}} {{\[\[}}0, 1, 2]] output_shape [4, 1, 1] : tensor<4xf32> into tensor<4x1x1xf32>
# CHECK: linalg.generic {indexing_maps = [#{{.+}}, #[[CH]], #[[CH]]
print_ir(lambda x, m, v: F.batch_norm(x, m, v, training=False), torch.randn(2, 4, 3, 3), torch.randn(4),
         torch.rand(4) + 0.5, title="batch_norm")
