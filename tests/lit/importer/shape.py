# RUN: %python %s | FileCheck %s
# Views are tensor reshapes and slices (no copies after bufferization); permute is linalg.transpose.
import torch
from qmlir.testing import print_ir

# CHECK-LABEL: // view
# CHECK: tensor.collapse_shape %{{.+}} {{\[\[}}0, 1, 2]] : tensor<2x3x4xf32> into tensor<24xf32>
# CHECK: tensor.expand_shape %{{.+}} {{\[\[}}0, 1]] output_shape [6, 4] : tensor<24xf32> into tensor<6x4xf32>
print_ir(lambda a: a.view(6, 4) + 1, torch.randn(2, 3, 4), title="view")

# CHECK-LABEL: // permute
# CHECK: linalg.transpose ins(%{{.+}} : tensor<2x3x4xf32>) outs(%{{.+}} : tensor<4x2x3xf32>) permutation = [2, 0, 1]
print_ir(lambda a: a.permute(2, 0, 1) + 1, torch.randn(2, 3, 4), title="permute")

# CHECK-LABEL: // slice_step
# CHECK: tensor.extract_slice %{{.+}}[0, 1] [3, 3] [1, 2] : tensor<3x7xf32> to tensor<3x3xf32>
print_ir(lambda a: a[:, 1::2] + 1, torch.randn(3, 7), title="slice_step")

# CHECK-LABEL: // cat
# CHECK: %[[E:.+]] = tensor.empty() : tensor<2x8xf32>
# CHECK: %[[I0:.+]] = tensor.insert_slice %arg0 into %[[E]]{{\[}}0, 0] [2, 3] [1, 1]
# CHECK: tensor.insert_slice %arg1 into %[[I0]]{{\[}}0, 3] [2, 5] [1, 1]
print_ir(lambda a, b: torch.cat([a, b], 1), torch.randn(2, 3), torch.randn(2, 5), title="cat")

# CHECK-LABEL: // expand
# CHECK: #[[IN:.+]] = affine_map<(d0, d1, d2) -> (d1, 0)>
# CHECK: #[[OUT:.+]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
# CHECK: linalg.generic {indexing_maps = [#[[IN]], #[[OUT]]]
print_ir(lambda a: a.expand(3, 2, 4) + 0, torch.randn(2, 1), title="expand")
