// RUN: qmlir-opt %s --qmlir-bf16-dot-matmul='threads=2' | FileCheck %s

// A bf16 NT matmul becomes the dot-product kernel: N split over 2 tasks, 32-wide bf16 dots into
// 16 f32 lanes, one reduction per output element added into the accumulator tile.
// CHECK-LABEL: func.func @linear
// CHECK-NOT: linalg.matmul
// CHECK: scf.forall (%{{.+}}) in (2) shared_outs
// CHECK: scf.for
// CHECK: x86vector.avx512.dot %{{.+}}, %{{.+}}, %{{.+}} : vector<32xbf16> -> vector<16xf32>
// CHECK: vector.reduction <add>, %{{.+}} fastmath<reassoc> : vector<16xf32> into f32
// CHECK: tensor.parallel_insert_slice
func.func @linear(%x: tensor<4x64xbf16>, %w: tensor<16x64xbf16>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
         ins(%x, %w : tensor<4x64xbf16>, tensor<16x64xbf16>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// K not a multiple of 32: left to the portable schedule.
// CHECK-LABEL: func.func @short_k
// CHECK: linalg.matmul
func.func @short_k(%x: tensor<4x48xbf16>, %w: tensor<16x48xbf16>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
         ins(%x, %w : tensor<4x48xbf16>, tensor<16x48xbf16>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}
