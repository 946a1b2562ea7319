// qmlir-select-kernels records the first kernel (priority int8_vnni, bf16_dot, portable) whose
// CPU features the target has and which takes the op, as a qmlir.kernel attribute on the op;
// it changes nothing else. A matmul no kernel takes keeps no attribute (the scalar path).

// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx512_bf16,avx512_vnni threads=2' | FileCheck %s
// RUN: qmlir-opt %s --qmlir-select-kernels='features= threads=2' | FileCheck %s --check-prefix=NONE
// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx512_bf16,avx512_vnni threads=1' | FileCheck %s --check-prefix=ONE

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// i8 x i8 -> i32: the VNNI kernel (only with avx512_vnni; otherwise the portable outer-product schedule).
// CHECK-LABEL: func.func @int8
// CHECK: linalg.matmul {qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "int8_vnni", nc = 64 : i64}} ins(%arg0, %arg1 : tensor<8x64xi8>, tensor<64x128xi8>)
// NONE-LABEL: func.func @int8
// NONE: linalg.matmul {qmlir.kernel = {name = "portable", {{.*}}schedule = "outer"
func.func @int8(%x: tensor<8x64xi8>, %w: tensor<64x128xi8>) -> tensor<8x128xi32> {
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<8x128xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<8x128xi32>) -> tensor<8x128xi32>
  %y = linalg.matmul ins(%x, %w : tensor<8x64xi8>, tensor<64x128xi8>) outs(%f : tensor<8x128xi32>) -> tensor<8x128xi32>
  return %y : tensor<8x128xi32>
}

// bf16 NT: the dot-product kernel with avx512_bf16; without it the portable NT schedule.
// CHECK-LABEL: func.func @bf16
// CHECK: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "bf16_dot", nc = 8 : i64, nr = 4 : i64}} ins(%arg0, %arg1 : tensor<4x64xbf16>, tensor<16x64xbf16>)
// NONE-LABEL: func.func @bf16
// NONE-NOT: bf16_dot
// NONE: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {{{.*}}name = "portable"{{.*}}schedule = "nt"{{.*}}}} ins(%arg0, %arg1 : tensor<4x64xbf16>, tensor<16x64xbf16>)
func.func @bf16(%x: tensor<4x64xbf16>, %w: tensor<16x64xbf16>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [#lhs, #rhs, #out]
         ins(%x, %w : tensor<4x64xbf16>, tensor<16x64xbf16>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// f32 NT: no ISA kernel takes it, whatever the features: the portable NT schedule.
// CHECK-LABEL: func.func @f32
// CHECK: linalg.matmul indexing_maps = [#map, #map1, #map2] {qmlir.kernel = {batch = 0 : i64, kc = 64 : i64, kv = 16 : i64, mr = 4 : i64, name = "portable", nc = 16 : i64, nr = 4 : i64, schedule = "nt", threaded = 0 : i64}}
// NONE-LABEL: func.func @f32
// NONE: qmlir.kernel = {{{.*}}name = "portable"{{.*}}schedule = "nt"
func.func @f32(%x: tensor<4x64xf32>, %w: tensor<16x64xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul indexing_maps = [#lhs, #rhs, #out]
         ins(%x, %w : tensor<4x64xf32>, tensor<16x64xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// Big enough to pay for a dispatch: with threads=2 N is split in two 128-column tasks; with one
// thread it is not.
// CHECK-LABEL: func.func @big
// CHECK: qmlir.kernel = {{{.*}}name = "portable", nc = 128 : i64{{.*}}threaded = 1 : i64}
// ONE-LABEL: func.func @big
// ONE: qmlir.kernel = {{{.*}}name = "portable", nc = 256 : i64{{.*}}threaded = 0 : i64}
func.func @big(%x: tensor<32x256xf32>, %w: tensor<256x256xf32>) -> tensor<32x256xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<32x256xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<32x256xf32>) -> tensor<32x256xf32>
  %y = linalg.matmul indexing_maps = [#lhs, #rhs, #out]
         ins(%x, %w : tensor<32x256xf32>, tensor<256x256xf32>) outs(%f : tensor<32x256xf32>) -> tensor<32x256xf32>
  return %y : tensor<32x256xf32>
}

// K = 7 and N = 7 have no vector-width divisor: no kernel takes it, no attribute.
// CHECK-LABEL: func.func @odd
// CHECK-NOT: qmlir.kernel
// CHECK: linalg.matmul indexing_maps = [#map, #map1, #map2] ins(%arg0, %arg1 : tensor<4x7xf32>, tensor<7x7xf32>)
// CHECK-NOT: qmlir.kernel
// NONE-LABEL: func.func @odd
// NONE-NOT: qmlir.kernel
func.func @odd(%x: tensor<4x7xf32>, %w: tensor<7x7xf32>) -> tensor<4x7xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x7xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x7xf32>) -> tensor<4x7xf32>
  %y = linalg.matmul indexing_maps = [#lhs, #rhs, #out]
         ins(%x, %w : tensor<4x7xf32>, tensor<7x7xf32>) outs(%f : tensor<4x7xf32>) -> tensor<4x7xf32>
  return %y : tensor<4x7xf32>
}
