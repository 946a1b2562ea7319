// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels --qmlir-expand-kernels='stage=tensors' | FileCheck %s --check-prefix=VEC

// A max over the last dimension (softmax's first pass) takes row_reduce: rows one by one, each
// reduced in 16 lanes of partial maxima (a vector<16> loop-carried value), merged at its end.
// CHECK-LABEL: func.func @row_max
// CHECK: qmlir.kernel = {lanes = 16 : i64, name = "row_reduce"}
// VEC-LABEL: func.func @row_max
// VEC-NOT: linalg.generic
// VEC: scf.for
// VEC: scf.for {{.*}} -> (vector<1x1x16xf32>)
// VEC: arith.maximumf %{{.+}}, %{{.+}} : vector<1x1x16xf32>
// VEC: vector.reduction <maximumf>
func.func @row_max(%x: tensor<9x4x64xf32>) -> tensor<9x4xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %e = tensor.empty() : tensor<9x4xf32>
  %acc = linalg.fill ins(%ninf : f32) outs(%e : tensor<9x4xf32>) -> tensor<9x4xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, j, k) -> (i, j, k)>, affine_map<(i, j, k) -> (i, j)>],
                       iterator_types = ["parallel", "parallel", "reduction"]} ins(%x : tensor<9x4x64xf32>) outs(%acc : tensor<9x4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %m = arith.maximumf %o, %a : f32
    linalg.yield %m : f32
  } -> tensor<9x4xf32>
  return %y : tensor<9x4xf32>
}

// -----

// A row of 40 (not a multiple of 16 lanes), or a body that is more than one combining op,
// is left to the scalar loops.
// CHECK-LABEL: func.func @short_row
// CHECK-NOT: row_reduce
func.func @short_row(%x: tensor<4x40xf32>) -> tensor<4xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %acc = linalg.fill ins(%z : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>],
                       iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x40xf32>) outs(%acc : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %s = arith.addf %o, %a : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %y : tensor<4xf32>
}

// CHECK-LABEL: func.func @squares
// CHECK-NOT: row_reduce
func.func @squares(%x: tensor<4x64xf32>) -> tensor<4xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4xf32>
  %acc = linalg.fill ins(%z : f32) outs(%e : tensor<4xf32>) -> tensor<4xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(i, k) -> (i, k)>, affine_map<(i, k) -> (i)>],
                       iterator_types = ["parallel", "reduction"]} ins(%x : tensor<4x64xf32>) outs(%acc : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %q = arith.mulf %a, %a : f32
    %s = arith.addf %o, %q : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %y : tensor<4xf32>
}
