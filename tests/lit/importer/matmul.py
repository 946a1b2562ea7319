# RUN: %python %s | FileCheck %s
# mm / bmm / addmm become linalg.matmul / linalg.batch_matmul on a zero-filled accumulator;
# bf16 accumulates in f32 and rounds once.
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // mm
# CHECK: %[[Z:.+]] = arith.constant 0.000000e+00 : f32
# CHECK: %[[ACC:.+]] = linalg.fill ins(%[[Z]] : f32) outs(%{{.+}} : tensor<4x8xf32>)
# CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<4x6xf32>, tensor<6x8xf32>) outs(%[[ACC]] : tensor<4x8xf32>)
print_ir(torch.mm, torch.randn(4, 6), torch.randn(6, 8), title="mm")

# CHECK-LABEL: // linear_bf16
# CHECK: linalg.transpose ins(%{{.+}} : tensor<16x32xbf16>) outs(%{{.+}} : tensor<32x16xbf16>) permutation = [1, 0]
# CHECK: linalg.fill ins(%{{.+}} : f32) outs(%{{.+}} : tensor<4x16xf32>)
# CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<4x32xbf16>, tensor<32x16xbf16>) outs(%{{.+}} : tensor<4x16xf32>)
# CHECK: linalg.generic
# CHECK-SAME: ins(%{{.+}}, %{{.+}} : tensor<4x16xf32>, tensor<16xbf16>)
# CHECK: arith.addf %{{.+}}, %{{.+}} : f32
# CHECK: arith.truncf %{{.+}} : f32 to bf16
print_ir(F.linear, torch.randn(4, 32, dtype=torch.bfloat16), torch.randn(16, 32, dtype=torch.bfloat16),
         torch.randn(16, dtype=torch.bfloat16), title="linear_bf16")

# CHECK-LABEL: // bmm
# CHECK: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<3x4x5xf32>, tensor<3x5x2xf32>) outs(%{{.+}} : tensor<3x4x2xf32>)
print_ir(torch.bmm, torch.randn(3, 4, 5), torch.randn(3, 5, 2), title="bmm")
