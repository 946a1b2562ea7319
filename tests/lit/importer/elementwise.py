# RUN: %python %s | FileCheck %s
# Elementwise ops become broadcasting linalg.generic ops; bf16 math runs in f32 and rounds once.
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // add_broadcast
# CHECK-DAG: #[[ID:.+]] = affine_map<(d0, d1) -> (d0, d1)>
# CHECK-DAG: #[[ROW:.+]] = affine_map<(d0, d1) -> (d1)>
# CHECK: func.func @forward(%[[A:.+]]: tensor<3x4xf32>, %[[B:.+]]: tensor<4xf32>) -> tensor<3x4xf32>
# CHECK: linalg.generic {indexing_maps = [#[[ID]], #[[ROW]], #[[ID]]], iterator_types = ["parallel", "parallel"]} ins(%[[A]], %[[B]] : tensor<3x4xf32>, tensor<4xf32>)
# CHECK: arith.addf
print_ir(lambda a, b: a + b, torch.randn(3, 4), torch.randn(4), title="add_broadcast")

# CHECK-LABEL: // size1_broadcast
# CHECK: affine_map<(d0, d1) -> (d0, 0)>
print_ir(lambda a, b: a * b, torch.randn(3, 4), torch.randn(3, 1), title="size1_broadcast")

# CHECK-LABEL: // bf16_gelu
# CHECK: ^bb0(%[[IN:.+]]: bf16, %{{.+}}: bf16):
# CHECK: %[[X:.+]] = arith.extf %[[IN]] : bf16 to f32
# CHECK: math.erf
# CHECK: arith.truncf %{{.+}} : f32 to bf16
# CHECK: -> tensor<8xbf16>
print_ir(F.gelu, torch.randn(8, dtype=torch.bfloat16), title="bf16_gelu")

# CHECK-LABEL: // compare_where
# CHECK: arith.cmpf ogt
# CHECK: arith.extui %{{.+}} : i1 to i8
# CHECK: arith.cmpi ne, %{{.+}}, %{{.+}} : i8
# CHECK: arith.select
print_ir(lambda a, b: torch.where(a > 0, a, b), torch.randn(5), torch.randn(5), title="compare_where")

# CHECK-LABEL: // sigmoid_rsqrt
# CHECK: math.exp
# CHECK: arith.divf
# CHECK: math.rsqrt
print_ir(lambda a: torch.sigmoid(a) + torch.rsqrt(a.abs() + 1), torch.randn(5), title="sigmoid_rsqrt")

# CHECK-LABEL: // int_floordiv
# CHECK: arith.floordivsi %{{.+}}, %{{.+}} : i64
print_ir(lambda a: a // 3, torch.arange(6), title="int_floordiv")
