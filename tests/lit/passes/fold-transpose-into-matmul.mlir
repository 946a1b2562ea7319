// RUN: qmlir-opt %s --split-input-file --qmlir-fold-transpose-into-matmul | FileCheck %s

// F.linear's x @ permute(W): the transpose goes, the matmul reads W as [N, K]; qmlir.* attributes stay.
// CHECK-DAG: #[[A:.+]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[B:.+]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[C:.+]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @linear
// CHECK-NOT: linalg.transpose
// CHECK: linalg.matmul indexing_maps = [#[[A]], #[[B]], #[[C]]] {qmlir.act_absmax = 2.000000e+00 : f32} ins(%arg0, %arg1 : tensor<4x8xf32>, tensor<16x8xf32>)
func.func @linear(%x: tensor<4x8xf32>, %w: tensor<16x8xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<8x16xf32>
  %t = linalg.transpose ins(%w : tensor<16x8xf32>) outs(%e : tensor<8x16xf32>) permutation = [1, 0]
  %e2 = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e2 : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul {qmlir.act_absmax = 2.0 : f32} ins(%x, %t : tensor<4x8xf32>, tensor<8x16xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

// Attention's Q @ K^T (permutation [0, 2, 1]) folds into batch_matmul.
// CHECK-DAG: #[[BB:.+]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d3)>
// CHECK-LABEL: func.func @scores
// CHECK-NOT: linalg.transpose
// CHECK: linalg.batch_matmul indexing_maps = [#{{.+}}, #[[BB]], #{{.+}}] ins(%arg0, %arg1 : tensor<2x4x8xf32>, tensor<2x6x8xf32>)
func.func @scores(%q: tensor<2x4x8xf32>, %k: tensor<2x6x8xf32>) -> tensor<2x4x6xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8x6xf32>
  %t = linalg.transpose ins(%k : tensor<2x6x8xf32>) outs(%e : tensor<2x8x6xf32>) permutation = [0, 2, 1]
  %e2 = tensor.empty() : tensor<2x4x6xf32>
  %f = linalg.fill ins(%z : f32) outs(%e2 : tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %y = linalg.batch_matmul ins(%q, %t : tensor<2x4x8xf32>, tensor<2x8x6xf32>) outs(%f : tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  return %y : tensor<2x4x6xf32>
}

// -----

// Prefill's Q @ K^T (many rows, K = head_dim <= 128) keeps its transpose: the keys are copied
// to [K, N] and multiplied by outer products (3x faster than the NT schedule's K-lane sums).
// CHECK-LABEL: func.func @prefill_scores
// CHECK: linalg.transpose
// CHECK: linalg.batch_matmul ins(%arg0, %{{.+}} : tensor<3x384x64xf32>, tensor<3x64x640xf32>)
func.func @prefill_scores(%q: tensor<3x384x64xf32>, %k: tensor<3x640x64xf32>) -> tensor<3x384x640xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x64x640xf32>
  %t = linalg.transpose ins(%k : tensor<3x640x64xf32>) outs(%e : tensor<3x64x640xf32>) permutation = [0, 2, 1]
  %e2 = tensor.empty() : tensor<3x384x640xf32>
  %f = linalg.fill ins(%z : f32) outs(%e2 : tensor<3x384x640xf32>) -> tensor<3x384x640xf32>
  %y = linalg.batch_matmul ins(%q, %t : tensor<3x384x64xf32>, tensor<3x64x640xf32>) outs(%f : tensor<3x384x640xf32>) -> tensor<3x384x640xf32>
  return %y : tensor<3x384x640xf32>
}

// -----

// A constant [K, N] weight (quantized at compile time) is stored transposed, as [N, K].
// CHECK-LABEL: func.func @const_weight
// CHECK: arith.constant dense<{{\[}}[1, 3, 5], [2, 4, 6]]> : tensor<2x3xi8>
// CHECK: linalg.matmul indexing_maps = [#{{.+}}, #{{.+}}, #{{.+}}] ins(%arg0, %{{.+}} : tensor<4x3xi8>, tensor<2x3xi8>)
func.func @const_weight(%x: tensor<4x3xi8>) -> tensor<4x2xi32> {
  %w = arith.constant dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8>
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<4x2xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<4x2xi32>) -> tensor<4x2xi32>
  %y = linalg.matmul ins(%x, %w : tensor<4x3xi8>, tensor<3x2xi8>) outs(%f : tensor<4x2xi32>) -> tensor<4x2xi32>
  return %y : tensor<4x2xi32>
}

// -----

// Any other permutation, or a transposed left-hand operand, is left alone.
// CHECK-LABEL: func.func @other_perm
// CHECK: linalg.transpose
// CHECK: linalg.batch_matmul ins(
func.func @other_perm(%q: tensor<2x4x8xf32>, %k: tensor<8x2x6xf32>) -> tensor<2x4x6xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8x6xf32>
  %t = linalg.transpose ins(%k : tensor<8x2x6xf32>) outs(%e : tensor<2x8x6xf32>) permutation = [1, 0, 2]
  %e2 = tensor.empty() : tensor<2x4x6xf32>
  %f = linalg.fill ins(%z : f32) outs(%e2 : tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %y = linalg.batch_matmul ins(%q, %t : tensor<2x4x8xf32>, tensor<2x8x6xf32>) outs(%f : tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  return %y : tensor<2x4x6xf32>
}
