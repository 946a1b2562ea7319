// RUN: qmlir-opt %s --qmlir-polynomial-exp | FileCheck %s

// f32 exp, scalar (inside a generic body) or vector: Cephes' range reduction and polynomial,
// 2^n through the exponent bits, with the overflow, underflow and NaN cases selected last.
// CHECK-LABEL: func.func @softmax_exp
// CHECK-NOT: math.exp
// CHECK: arith.maximumf
// CHECK: arith.minimumf
// CHECK: math.floor
// CHECK: arith.fptosi %{{.+}} : f32 to i32
// CHECK: arith.shli
// CHECK: arith.bitcast %{{.+}} : i32 to f32
// CHECK: arith.cmpf olt
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf uno
func.func @softmax_exp(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
                       iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %v = math.exp %a : f32
    linalg.yield %v : f32
  } -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @vector_exp
// CHECK-NOT: math.exp
// CHECK: arith.fptosi %{{.+}} : vector<16xf32> to vector<16xi32>
func.func @vector_exp(%x: vector<16xf32>) -> vector<16xf32> {
  %y = math.exp %x : vector<16xf32>
  return %y : vector<16xf32>
}

// Other element types are left to the lowering.
// CHECK-LABEL: func.func @f64_exp
// CHECK: math.exp %{{.+}} : f64
func.func @f64_exp(%x: f64) -> f64 {
  %y = math.exp %x : f64
  return %y : f64
}
