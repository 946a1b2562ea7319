# RUN: %python %s | FileCheck %s
# Gathers: a generic over the output whose body reads the source with tensor.extract;
# negative indices wrap like PyTorch's.
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // embedding
# CHECK: ^bb0(%[[I:.+]]: i64, %{{.+}}: f32):
# CHECK: arith.cmpi slt, %[[I]]
# CHECK: arith.index_cast
# CHECK: %[[D:.+]] = linalg.index 2 : index
# CHECK: tensor.extract %{{.+}}[%{{.+}}, %[[D]]] : tensor<10x4xf32>
print_ir(lambda w, i: F.embedding(i, w), torch.randn(10, 4), torch.randint(0, 10, (2, 3)), title="embedding")

# CHECK-LABEL: // arange
# CHECK: linalg.generic {indexing_maps = [#{{.+}}], iterator_types = ["parallel"]} outs(%{{.+}} : tensor<4xi64>)
# CHECK: linalg.index 0
print_ir(lambda a: a + torch.arange(2, 14, 3), torch.zeros(4, dtype=torch.long), title="arange")

# CHECK-LABEL: // gather
# CHECK: tensor.extract %{{.+}} : tensor<3x5xf32>
print_ir(lambda x, i: torch.gather(x, 1, i), torch.randn(3, 5), torch.randint(0, 5, (3, 2)), title="gather")
