# RUN: %python %s | FileCheck %s
# Reductions are linalg.generic ops with reduction iterators; bf16 accumulates in f32.
import torch
from qmlir.testing import print_ir

# CHECK-LABEL: // sum_keepdim
# CHECK: #[[ID:.+]] = affine_map<(d0, d1) -> (d0, d1)>
# CHECK: #[[RED:.+]] = affine_map<(d0, d1) -> (d0)>
# CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[RED]]], iterator_types = ["parallel", "reduction"]}
# CHECK: arith.addf
# CHECK: tensor.expand_shape %{{.+}} {{\[\[}}0, 1]] output_shape [3, 1] : tensor<3xf32> into tensor<3x1xf32>
print_ir(lambda a: a.sum(-1, keepdim=True), torch.randn(3, 5), title="sum_keepdim")

# CHECK-LABEL: // mean_bf16
# CHECK: linalg.fill ins(%{{.+}} : f32) outs(%{{.+}} : tensor<2xf32>)
# CHECK: arith.extf %{{.+}} : bf16 to f32
# CHECK: arith.divf
# CHECK: arith.truncf %{{.+}} : f32 to bf16
print_ir(lambda a: a.mean(-1), torch.randn(2, 7, dtype=torch.bfloat16), title="mean_bf16")

# CHECK-LABEL: // softmax
# CHECK: arith.constant 0xFF800000 : f32
# CHECK: arith.maximumf
# CHECK: arith.subf
# CHECK: math.exp
# CHECK: arith.addf
# CHECK: arith.divf
print_ir(lambda a: torch.softmax(a, -1), torch.randn(2, 6), title="softmax")

# CHECK-LABEL: // cumsum
# CHECK: iterator_types = ["parallel", "reduction"]
# CHECK: linalg.index 0
# CHECK: linalg.index 1
# CHECK: arith.cmpi ule
print_ir(lambda a: torch.cumsum(a, 0), torch.randn(6), title="cumsum")

# CHECK-LABEL: // any
# CHECK: arith.ori %{{.+}}, %{{.+}} : i8
# CHECK: -> tensor<3xi8>
print_ir(lambda a: (a > 0).any(-1), torch.randn(3, 4), title="any")
