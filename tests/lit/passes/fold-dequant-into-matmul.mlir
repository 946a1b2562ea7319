// RUN: qmlir-opt %s --split-input-file --qmlir-fold-dequant-into-matmul | FileCheck %s

// Per-channel weight-only: the matmul reads the i8 weight, the scales multiply the result.
// CHECK-LABEL: func.func @weight_only
// CHECK-NOT: arith.sitofp %{{.+}} : i8 to f32
// CHECK: %[[P:.+]] = linalg.matmul ins(%arg0, %arg1 : tensor<2x4xf32>, tensor<4x3xi8>) outs(%{{.+}} : tensor<2x3xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[P]], %{{.+}} : tensor<2x3xf32>, tensor<3xf32>)
// CHECK: arith.mulf
func.func @weight_only(%x: tensor<2x4xf32>, %q: tensor<4x3xi8>) -> tensor<2x3xf32> {
  %s = arith.constant dense<[0.5, 0.25, 2.0]> : tensor<3xf32>
  %zp = arith.constant dense<0> : tensor<3xi64>
  %e = tensor.empty() : tensor<4x3xf32>
  %w = linalg.generic {indexing_maps = [affine_map<(k, n) -> (k, n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (k, n)>],
                       iterator_types = ["parallel", "parallel"]} ins(%q, %s, %zp : tensor<4x3xi8>, tensor<3xf32>, tensor<3xi64>) outs(%e : tensor<4x3xf32>) {
  ^bb0(%a: i8, %b: f32, %c: i64, %o: f32):
    %z = arith.sitofp %c : i64 to f32
    %f = arith.sitofp %a : i8 to f32
    %d = arith.subf %f, %z : f32
    %m = arith.mulf %d, %b : f32
    linalg.yield %m : f32
  } -> tensor<4x3xf32>
  %c0 = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e2 : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  return %y : tensor<2x3xf32>
}

// -----

// A non-zero zero point does not factor out of the sum: left alone.
// CHECK-LABEL: func.func @zero_point
// CHECK: linalg.matmul ins(%arg0, %{{.+}} : tensor<2x4xf32>, tensor<4x3xf32>)
func.func @zero_point(%x: tensor<2x4xf32>, %q: tensor<4x3xi8>) -> tensor<2x3xf32> {
  %s = arith.constant dense<[0.5, 0.25, 2.0]> : tensor<3xf32>
  %zp = arith.constant dense<[0, 1, 0]> : tensor<3xi64>
  %e = tensor.empty() : tensor<4x3xf32>
  %w = linalg.generic {indexing_maps = [affine_map<(k, n) -> (k, n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (n)>, affine_map<(k, n) -> (k, n)>],
                       iterator_types = ["parallel", "parallel"]} ins(%q, %s, %zp : tensor<4x3xi8>, tensor<3xf32>, tensor<3xi64>) outs(%e : tensor<4x3xf32>) {
  ^bb0(%a: i8, %b: f32, %c: i64, %o: f32):
    %z = arith.sitofp %c : i64 to f32
    %f = arith.sitofp %a : i8 to f32
    %d = arith.subf %f, %z : f32
    %m = arith.mulf %d, %b : f32
    linalg.yield %m : f32
  } -> tensor<4x3xf32>
  %c0 = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<2x3xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e2 : tensor<2x3xf32>) -> tensor<2x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<2x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<2x3xf32>) -> tensor<2x3xf32>
  return %y : tensor<2x3xf32>
}
