// RUN: qmlir-opt %s --split-input-file --qmlir-fuse-quantized-matmul | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-fuse-quantized-matmul --qmlir-lower-quant --canonicalize | FileCheck %s --check-prefix=LOWERED

// Per-axis weight, per-tensor activation with zero point 2: i8 x i8 -> i32, then
// (acc - 2 * colsum_w[n]) * 0.5 * s_w[n] in one epilogue.
// CHECK-LABEL: func.func @per_axis
// CHECK: %[[A:.+]] = quant.scast %{{.+}} : tensor<3x2x!quant.uniform<i8:f32, 5.000000e-01:2>> to tensor<3x2xi8>
// CHECK: %[[W:.+]] = quant.scast %{{.+}} : tensor<2x4x!quant.uniform<i8:f32:1, {{.+}}>> to tensor<2x4xi8>
// CHECK: %[[ACC:.+]] = linalg.matmul ins(%[[A]], %[[W]] : tensor<3x2xi8>, tensor<2x4xi8>) outs(%{{.+}} : tensor<3x4xi32>)
// CHECK: %[[COLSUM:.+]] = arith.constant dense<{{\[\[}}6, 8, 10, 12]]> : tensor<1x4xi32>
// CHECK: linalg.generic
// CHECK: arith.subi
// CHECK: arith.sitofp %{{.+}} : i32 to f32
// CHECK: arith.mulf
// CHECK-NOT: linalg.matmul {{.*}}f32
// LOWERED-LABEL: func.func @per_axis
// LOWERED-NOT: quant.
// LOWERED: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<3x2xi8>, tensor<2x4xi8>)
func.func @per_axis(%x: tensor<3x2xf32>) -> tensor<3x4xf32> {
  %ws = arith.constant dense<[[1, 2, 3, 4], [2, 2, 2, 2]]> : tensor<2x4xi8>
  %wq = quant.scast %ws : tensor<2x4xi8> to tensor<2x4x!quant.uniform<i8:f32:1, {0.1, 0.2, 0.3, 0.4}>>
  %wd = quant.dcast %wq : tensor<2x4x!quant.uniform<i8:f32:1, {0.1, 0.2, 0.3, 0.4}>> to tensor<2x4xf32>
  %xq = quant.qcast %x : tensor<3x2xf32> to tensor<3x2x!quant.uniform<i8:f32, 0.5:2>>
  %xd = quant.dcast %xq : tensor<3x2x!quant.uniform<i8:f32, 0.5:2>> to tensor<3x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x4xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x4xf32>) -> tensor<3x4xf32>
  %y = linalg.matmul ins(%xd, %wd : tensor<3x2xf32>, tensor<2x4xf32>) outs(%f : tensor<3x4xf32>) -> tensor<3x4xf32>
  return %y : tensor<3x4xf32>
}

// -----

// Sub-channel weight (groups of 2 along K): one i32 partial sum per group (batch_matmul),
// scaled per group and summed in the epilogue's reduction.
// CHECK-LABEL: func.func @groups
// CHECK: linalg.transpose ins(%{{.+}} : tensor<3x2x2xi8>) outs(%{{.+}} : tensor<2x3x2xi8>) permutation = [1, 0, 2]
// CHECK: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<2x3x2xi8>, tensor<2x2x4xi8>) outs(%{{.+}} : tensor<2x3x4xi32>)
// CHECK: iterator_types = ["parallel", "parallel", "reduction"]
func.func @groups(%x: tensor<3x4xf32>, %wq: tensor<4x4x!quant.uniform<i8:f32:{0:2, 1:1}, {{0.1, 0.2, 0.3, 0.4}, {0.5, 0.6, 0.7, 0.8}}>>) -> tensor<3x4xf32> {
  %wd = quant.dcast %wq : tensor<4x4x!quant.uniform<i8:f32:{0:2, 1:1}, {{0.1, 0.2, 0.3, 0.4}, {0.5, 0.6, 0.7, 0.8}}>> to tensor<4x4xf32>
  %xq = quant.qcast %x : tensor<3x4xf32> to tensor<3x4x!quant.uniform<i8:f32, 0.25>>
  %xd = quant.dcast %xq : tensor<3x4x!quant.uniform<i8:f32, 0.25>> to tensor<3x4xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x4xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x4xf32>) -> tensor<3x4xf32>
  %y = linalg.matmul ins(%xd, %wd : tensor<3x4xf32>, tensor<4x4xf32>) outs(%f : tensor<3x4xf32>) -> tensor<3x4xf32>
  return %y : tensor<3x4xf32>
}

// -----

// A float matmul is left alone.
// CHECK-LABEL: func.func @float
// CHECK: linalg.matmul ins(%arg0, %arg1 : tensor<2x2xf32>, tensor<2x2xf32>)
func.func @float(%a: tensor<2x2xf32>, %b: tensor<2x2xf32>, %c: tensor<2x2xf32>) -> tensor<2x2xf32> {
  %y = linalg.matmul ins(%a, %b : tensor<2x2xf32>, tensor<2x2xf32>) outs(%c : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}
