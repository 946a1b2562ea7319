# RUN: %python %s | FileCheck %s
# Writes: index_put is a loop over the index positions, each inserting one slice of the value
# at the (checked, clamped) index; a graph that writes into an input marks that argument
# bufferization.writable = true and returns its new value as a trailing result named by
# qmlir.mutated_results (removed after bufferization); the other arguments stay unmarked.
import torch
from qmlir.testing import print_ir


def kv_write(cache, pos, kv):
    cache.index_copy_(2, pos, kv)
    return cache.sum()


# CHECK-LABEL: // index_copy_ into an input
# CHECK: func.func @forward(%arg0: tensor<1x2x8x4xf32> {bufferization.writable = true}, %arg1: tensor<3xi64>, %arg2: tensor<1x2x3x4xf32>)
# CHECK-SAME: -> (tensor<f32>, tensor<2xi64>, tensor<1x2x8x4xf32>)
# CHECK-SAME: qmlir.mutated_results = [0]
# CHECK: %[[NEW:.+]] = scf.for %{{.+}} = %{{.+}} to %{{.+}} step %{{.+}} iter_args(%[[DEST:.+]] = %arg0) -> (tensor<1x2x8x4xf32>)
# CHECK: arith.maxsi
# CHECK: arith.minsi
# CHECK: %[[ROW:.+]] = tensor.extract_slice %arg2[0, 0, %{{.+}}, 0] [1, 2, 1, 4] [1, 1, 1, 1]
# CHECK: tensor.insert_slice %[[ROW]] into %[[DEST]][0, 0, %{{.+}}, 0] [1, 2, 1, 4] [1, 1, 1, 1]
# CHECK: return %{{.+}}, %{{.+}}, %[[NEW]] : tensor<f32>, tensor<2xi64>, tensor<1x2x8x4xf32>
print_ir(kv_write, torch.zeros(1, 2, 8, 4), torch.tensor([1, 2, 3]), torch.randn(1, 2, 3, 4),
         title="index_copy_ into an input")


# CHECK-LABEL: // index_put accumulate
# CHECK: scf.for
# CHECK: tensor.extract_slice %{{.+}} : tensor<5x3xf32> to tensor<1x3xf32>
# CHECK: arith.addf
# CHECK: tensor.insert_slice
print_ir(lambda x, i, v: torch.index_put(x, (i,), v, accumulate=True), torch.zeros(5, 3), torch.tensor([0, 0]),
         torch.ones(2, 3), title="index_put accumulate")


# CHECK-LABEL: // slice_scatter
# CHECK: tensor.insert_slice %{{.+}} into %{{.+}}[0, 1] [3, 2] [1, 1] : tensor<3x2xf32> into tensor<3x5xf32>
print_ir(lambda x, v: torch.slice_scatter(x, v, 1, 1, 3), torch.zeros(3, 5), torch.ones(3, 2), title="slice_scatter")


# CHECK-LABEL: // scatter
# CHECK: scf.for
# CHECK: tensor.extract %{{.+}} : tensor<3x2xi64>
# CHECK: tensor.insert %{{.+}} into %{{.+}} : tensor<3x5xf32>
print_ir(lambda x, i, v: torch.scatter(x, 1, i, v), torch.zeros(3, 5), torch.tensor([[0, 4], [2, 2], [1, 0]]),
         torch.ones(3, 2), title="scatter")


def counter(n, x):
    y = x + n
    n.add_(1)
    return y


# A counter's add_: its new value is computed into a buffer of its own and written back.
# CHECK-LABEL: // counter
# CHECK: func.func @forward(%arg0: tensor<3xi64>, %arg1: tensor<i64> {bufferization.writable = true})
# CHECK-SAME: qmlir.mutated_results = [1]
print_ir(counter, torch.tensor(0), torch.arange(3), title="counter")
