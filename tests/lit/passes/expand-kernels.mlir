// qmlir-expand-kernels expands each op by the kernel and config written on it (here by hand,
// as qmlir-select-kernels would): "portable" is a tensors-stage kernel, so stage=tensors turns
// the NT matmul into its vectorized loop nest, with the tiles of the attribute, and
// stage=buffers leaves it alone. An unknown kernel name is an error naming it.

// RUN: qmlir-opt %s --qmlir-expand-kernels='stage=tensors' | FileCheck %s
// RUN: qmlir-opt %s --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=BUF
// RUN: sed -e 's/name = "portable"/name = "no_such_kernel"/' %s | not qmlir-opt - --qmlir-expand-kernels='stage=tensors' 2>&1 | FileCheck %s --check-prefix=ERR
// RUN: sed -e 's/name = "portable"/name = "no_such_kernel"/' %s | not qmlir-opt - --qmlir-expand-kernels='stage=buffers' 2>&1 | FileCheck %s --check-prefix=ERR

// Register tile 4x4 (mr, nr), K by 16 lanes (kv): 4x4x16 f32 vectors, one reduction per element.
// CHECK-LABEL: func.func @nt
// CHECK-NOT: linalg.matmul
// CHECK: scf.for %{{.+}} = %c0 to %c16 step %c4 iter_args(%{{.+}} = %{{.+}}) -> (tensor<4x16xf32>)
// CHECK: scf.for %{{.+}} = %c0 to %c64 step %c16 iter_args(%{{.+}} = %{{.+}}) -> (vector<4x4x16xf32>)
// CHECK: vector.transfer_read {{.+}} : tensor<4x16xf32>, vector<4x16xf32>
// CHECK: arith.mulf %{{.+}}, %{{.+}} : vector<4x4x16xf32>
// CHECK: arith.addf %{{.+}}, %{{.+}} : vector<4x4x16xf32>
// CHECK: vector.reduction <add>, %{{.+}}, %{{.+}} : vector<16xf32> into f32
// CHECK: vector.transfer_write {{.+}} : vector<4x4xf32>, tensor<4x4xf32>
// CHECK: tensor.insert_slice
// CHECK-NOT: qmlir.kernel
// CHECK: return
// BUF-LABEL: func.func @nt
// BUF: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {batch = 0 : i64, kc = 64 : i64, kv = 16 : i64, mr = 4 : i64, name = "portable", nc = 16 : i64, nr = 4 : i64, schedule = "nt", threaded = 0 : i64}}
// BUF-NOT: vector.
// ERR: error: qmlir.kernel names an unknown kernel 'no_such_kernel' (kernels: bf16_dot, dequant_gemm, int8_block_avx2, int8_block_dot, int8_vnni, portable, row_reduce)
func.func @nt(%x: tensor<4x64xf32>, %w: tensor<16x64xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
         {qmlir.kernel = {batch = 0 : i64, kc = 64 : i64, kv = 16 : i64, mr = 4 : i64, name = "portable", nc = 16 : i64, nr = 4 : i64, schedule = "nt", threaded = 0 : i64}}
         ins(%x, %w : tensor<4x64xf32>, tensor<16x64xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// The same matmul with other tiles written on it: 2x2 register tiles, K by 8 lanes.
// CHECK-LABEL: func.func @custom
// CHECK-NOT: linalg.matmul
// CHECK: scf.for %{{.+}} = %c0 to %c4 step %c2
// CHECK: scf.for %{{.+}} = %c0 to %c16 step %c2
// CHECK: scf.for %{{.+}} = %c0 to %c64 step %c8 iter_args(%{{.+}} = %{{.+}}) -> (vector<2x2x8xf32>)
// CHECK: arith.mulf %{{.+}}, %{{.+}} : vector<2x2x8xf32>
// CHECK: vector.reduction <add>, %{{.+}}, %{{.+}} : vector<8xf32> into f32
// CHECK-NOT: qmlir.kernel
// BUF-LABEL: func.func @custom
// BUF: linalg.matmul {{.*}}{qmlir.kernel = {{{.*}}mr = 2 : i64, name = "portable"
func.func @custom(%x: tensor<4x64xf32>, %w: tensor<16x64xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>]
         {qmlir.kernel = {batch = 0 : i64, kc = 64 : i64, kv = 8 : i64, mr = 2 : i64, name = "portable", nc = 16 : i64, nr = 2 : i64, schedule = "nt", threaded = 0 : i64}}
         ins(%x, %w : tensor<4x64xf32>, tensor<16x64xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}
