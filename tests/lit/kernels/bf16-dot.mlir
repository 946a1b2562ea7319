// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx512_bf16 threads=2' | FileCheck %s --check-prefix=SELECT
// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx512_bf16 threads=2' --qmlir-expand-kernels='stage=tensors' | FileCheck %s
// RUN: qmlir-opt %s --qmlir-select-kernels='features= threads=2' | FileCheck %s --check-prefix=PORTABLE

// Selection records the kernel and its tiles on the op (only where the target has avx512_bf16;
// without it the portable schedule takes the matmul).
// SELECT: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "bf16_dot", nc = 8 : i64, nr = 4 : i64}}
// PORTABLE: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {{{.*}}name = "portable"{{.*}}schedule = "nt"

// Expanded, a bf16 NT matmul becomes the dot-product kernel: N split over 2 tasks, 32-wide bf16
// dots into 16 f32 lanes, one reduction per output element added into the accumulator tile.
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

// K not a multiple of 32: left to the portable schedule (tiled and vectorized, no dot instruction).
// SELECT-LABEL: func.func @short_k
// SELECT: qmlir.kernel = {{{.*}}name = "portable"
// CHECK-LABEL: func.func @short_k
// CHECK-NOT: x86vector.avx512.dot
// CHECK: arith.mulf %{{.+}} : vector<4x4x16xf32>
func.func @short_k(%x: tensor<4x48xbf16>, %w: tensor<16x48xbf16>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
         ins(%x, %w : tensor<4x48xbf16>, tensor<16x48xbf16>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}
