# RUN: %python %s | FileCheck %s
# Gathers: a generic over the output whose body reads the source with tensor.extract at the
# index clamped into range; a run-time check over the index tensor (count of out-of-range
# elements, one of them) is a trailing tensor<2xi64> result named in qmlir.checks.
import torch
import torch.nn.functional as F
from qmlir.testing import print_ir

# CHECK-LABEL: // embedding
# CHECK: func.func @forward({{.*}}) -> (tensor<2x3x4xf32>, tensor<2xi64>) attributes {{{.*}}qmlir.checks = ["aten.embedding.default at node 'embedding' (indexing.py:{{[0-9]+}}): index {index} is out of bounds for dimension 0 with size 10"]}
# CHECK: arith.cmpi slt
# CHECK: arith.cmpi sge
# CHECK: tensor.from_elements %{{.+}}, %{{.+}} : tensor<2xi64>
# CHECK: ^bb0(%[[I:.+]]: i64, %{{.+}}: f32):
# CHECK: arith.maxsi %[[I]]
# CHECK: arith.minsi
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

# Advanced indexing wraps negative indices (PyTorch's rule), so its check admits [-size, size).
# CHECK-LABEL: // index
# CHECK: qmlir.checks = ["aten.index.Tensor at node 'index' {{.*}}with size 6"]
# CHECK: arith.constant -6 : i64
# CHECK: arith.select
# CHECK: arith.maxsi
print_ir(lambda x, i: x[i], torch.randn(6, 2), torch.tensor([-1, 2]), title="index")
