# RUN: %python %s | FileCheck %s
# NCHW convolution and pooling map to linalg's named conv/pooling ops; padding is an insert into
# a filled tensor (zeros for conv and average, -inf for max).
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // conv2d
# CHECK: tensor.insert_slice %{{.+}} into %{{.+}}[0, 0, 1, 1] [1, 3, 8, 8] [1, 1, 1, 1] : tensor<1x3x8x8xf32> into tensor<1x3x10x10xf32>
# CHECK: linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<2> : tensor<2xi64>}
# CHECK-SAME: outs(%{{.+}} : tensor<1x4x4x4xf32>)
print_ir(lambda x, w: F.conv2d(x, w, stride=2, padding=1), torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3),
         title="conv2d")

# CHECK-LABEL: // max_pool
# CHECK: arith.constant 0xFF800000 : f32
# CHECK: linalg.pooling_nchw_max
print_ir(lambda x: F.max_pool2d(x, 2), torch.randn(1, 2, 4, 4), title="max_pool")

# CHECK-LABEL: // adaptive_avg_pool
# CHECK: iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction"]
# CHECK: arith.floordivsi
# CHECK: arith.ceildivsi
print_ir(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), torch.randn(1, 2, 5, 7), title="adaptive_avg_pool")
