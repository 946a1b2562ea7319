// RUN: qmlir-opt %s --split-input-file --qmlir-fold-dequant-into-matmul | FileCheck %s

// Per-channel int8 weight-only: one dequantizing matmul on the stored i8 weight; the scales
// become a [1, N] constant read through (k floordiv K, n); the all-zero zero points are dropped.
// CHECK-DAG: #[[X:.+]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[Q:.+]] = affine_map<(d0, d1, d2) -> (d2, d1)>
// CHECK-DAG: #[[S:.+]] = affine_map<(d0, d1, d2) -> (d2 floordiv 4, d1)>
// CHECK-LABEL: func.func @weight_only
// CHECK-NOT: linalg.matmul
// CHECK: %[[SC:.+]] = arith.constant dense<{{\[\[}}5.000000e-01, 2.500000e-01, 2.000000e+00]]> : tensor<1x3xf32>
// CHECK: linalg.generic {indexing_maps = [#[[X]], #[[Q]], #[[S]], #{{.+}}], iterator_types = ["parallel", "parallel", "reduction"]}
// CHECK-SAME: ins(%arg0, %arg1, %[[SC]] : tensor<2x4xf32>, tensor<4x3xi8>, tensor<1x3xf32>)
// CHECK: arith.sitofp %{{.+}} : i8 to f32
// CHECK-NEXT: arith.mulf
// CHECK-NEXT: arith.mulf
// CHECK-NEXT: arith.addf
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

// Unsigned int4 in groups of 2 rows with zero points: the nibble unpacking and the
// dequantization fold into one generic on the packed [K/2, N] bytes; the zero points stay.
// CHECK-DAG: #[[Q4:.+]] = affine_map<(d0, d1, d2) -> (d2 floordiv 2, d1)>
// CHECK-LABEL: func.func @int4_groups
// CHECK-NOT: linalg.matmul
// CHECK: linalg.generic {indexing_maps = [#{{.+}}, #[[Q4]], #[[Q4]], #[[Q4]], #{{.+}}]
// CHECK-SAME: ins(%arg0, %arg1, %{{.+}}, %{{.+}} : tensor<1x4xf32>, tensor<2x3xi8>, tensor<2x3xf32>, tensor<2x3xf32>)
// CHECK: arith.andi
// CHECK: arith.shrui
// CHECK: linalg.index 2
// CHECK: arith.select
// CHECK: arith.sitofp
// CHECK-NEXT: arith.subf
// CHECK-NOT: linalg.generic
func.func @int4_groups(%x: tensor<1x4xf32>, %packed: tensor<2x3xi8>) -> tensor<1x3xf32> {
  %s = arith.constant dense<[[0.5, 0.25, 2.0], [1.0, 1.5, 0.125]]> : tensor<2x3xf32>
  %zp = arith.constant dense<[[8, 7, 8], [0, 15, 3]]> : tensor<2x3xi64>
  %e0 = tensor.empty() : tensor<4x3xi8>
  %u = linalg.generic {indexing_maps = [affine_map<(k, n) -> (k floordiv 2, n)>, affine_map<(k, n) -> (k, n)>],
                       iterator_types = ["parallel", "parallel"]} ins(%packed : tensor<2x3xi8>) outs(%e0 : tensor<4x3xi8>) {
  ^bb0(%in: i8, %out: i8):
    %c4 = arith.constant 4 : i8
    %c15 = arith.constant 15 : i8
    %lo = arith.andi %in, %c15 : i8
    %sh = arith.shrui %in, %c4 : i8
    %hi = arith.andi %sh, %c15 : i8
    %k = linalg.index 0 : index
    %c2 = arith.constant 2 : index
    %r = arith.remui %k, %c2 : index
    %c0i = arith.constant 0 : index
    %even = arith.cmpi eq, %r, %c0i : index
    %v = arith.select %even, %lo, %hi : i8
    linalg.yield %v : i8
  } -> tensor<4x3xi8>
  %e = tensor.empty() : tensor<4x3xf32>
  %w = linalg.generic {indexing_maps = [affine_map<(k, n) -> (k, n)>, affine_map<(k, n) -> (k floordiv 2, n)>, affine_map<(k, n) -> (k floordiv 2, n)>, affine_map<(k, n) -> (k, n)>],
                       iterator_types = ["parallel", "parallel"]} ins(%u, %s, %zp : tensor<4x3xi8>, tensor<2x3xf32>, tensor<2x3xi64>) outs(%e : tensor<4x3xf32>) {
  ^bb0(%a: i8, %b: f32, %c: i64, %o: f32):
    %z = arith.sitofp %c : i64 to f32
    %f = arith.sitofp %a : i8 to f32
    %d = arith.subf %f, %z : f32
    %m = arith.mulf %d, %b : f32
    linalg.yield %m : f32
  } -> tensor<4x3xf32>
  %c0 = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<1x3xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e2 : tensor<1x3xf32>) -> tensor<1x3xf32>
  %y = linalg.matmul ins(%x, %w : tensor<1x4xf32>, tensor<4x3xf32>) outs(%acc : tensor<1x3xf32>) -> tensor<1x3xf32>
  return %y : tensor<1x3xf32>
}

// -----

// Scales that are not constants are left alone.
// CHECK-LABEL: func.func @runtime_scales
// CHECK: linalg.matmul ins(%arg0, %{{.+}} : tensor<2x4xf32>, tensor<4x3xf32>)
func.func @runtime_scales(%x: tensor<2x4xf32>, %q: tensor<4x3xi8>, %s: tensor<3xf32>) -> tensor<2x3xf32> {
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
