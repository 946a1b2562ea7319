// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='threads=2' | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='threads=2' --one-shot-bufferize='bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map' --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=BUF

// A dequantizing matmul (what qmlir-fold-dequant-into-matmul makes of a weight-only layer)
// takes the dequant_gemm kernel on any CPU (no features): one row x 256 columns per tile at
// M = 1, the whole K in one block. On buffers: the int4 bytes are read as a vector, both
// nibbles made 16 q (shli 4, andi 0xF0; unsigned: xor 0x80), converted and FMA'd per group,
// then each group's sum is scaled (s / 16) after its zero-point term is taken off.
// CHECK-LABEL: func.func @int4_decode
// CHECK: linalg.generic {{.*}}qmlir.kernel = {kc = 256 : i64, mr = 1 : i64, name = "dequant_gemm", nv = 16 : i64, tasks = 1 : i64}
// BUF-LABEL: func.func @int4_decode
// BUF-NOT: linalg.generic
// BUF: memref.alloc() {alignment = 64 : i64} : memref<1x2xf32>
// BUF: scf.forall (%{{.+}}) in (1)
// BUF: vector.transfer_read %{{.+}} {in_bounds = [true]} : memref<128x256xi8>, vector<256xi8>
// BUF: arith.shli
// BUF: arith.andi
// BUF: arith.xori
// BUF: arith.extsi %{{.+}} : vector<16xi8> to vector<16xi32>
// BUF: arith.sitofp %{{.+}} : vector<16xi32> to vector<16xf32>
// BUF: vector.fma
// BUF: arith.mulf %{{.+}}, %cst_{{[0-9]+}} : vector<16xf32>
// BUF: arith.subf
// BUF: vector.fma
// BUF: vector.transfer_write
// BUF: memref.dealloc
#x = affine_map<(m, n, k) -> (m, k)>
#q = affine_map<(m, n, k) -> (k floordiv 2, n)>
#s = affine_map<(m, n, k) -> (k floordiv 128, n)>
#y = affine_map<(m, n, k) -> (m, n)>
func.func @int4_decode(%x: tensor<1x256xf32>, %q: tensor<128x256xi8>, %s: tensor<2x256xf32>, %zp: tensor<2x256xf32>) -> tensor<1x256xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x256xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e : tensor<1x256xf32>) -> tensor<1x256xf32>
  %y = linalg.generic {indexing_maps = [#x, #q, #s, #s, #y], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %q, %s, %zp : tensor<1x256xf32>, tensor<128x256xi8>, tensor<2x256xf32>, tensor<2x256xf32>) outs(%acc : tensor<1x256xf32>) {
  ^bb0(%a: f32, %b: i8, %sc: f32, %z: f32, %o: f32):
    %c4 = arith.constant 4 : i8
    %c15 = arith.constant 15 : i8
    %lo = arith.andi %b, %c15 : i8
    %sh = arith.shrui %b, %c4 : i8
    %hi = arith.andi %sh, %c15 : i8
    %k = linalg.index 2 : index
    %c2 = arith.constant 2 : index
    %r = arith.remui %k, %c2 : index
    %c0i = arith.constant 0 : index
    %even = arith.cmpi eq, %r, %c0i : index
    %v = arith.select %even, %lo, %hi : i8
    %f = arith.sitofp %v : i8 to f32
    %d = arith.subf %f, %z : f32
    %w = arith.mulf %d, %sc : f32
    %p = arith.mulf %a, %w : f32
    %sum = arith.addf %o, %p : f32
    linalg.yield %sum : f32
  } -> tensor<1x256xf32>
  return %y : tensor<1x256xf32>
}

// -----

// int8 per channel, M = 6 and N = 40: row tiles of 4 then the 2 left rows one by one; the
// 40 columns (less than one 64-column tile) are read and written with masked vectors.
// CHECK-LABEL: func.func @int8_tail
// CHECK: qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "dequant_gemm", nv = 4 : i64, tasks = 1 : i64}
// BUF-LABEL: func.func @int8_tail
// BUF-NOT: scf.forall
// BUF: vector.transfer_read %{{.+}} : memref<64x40xi8>, vector<48xi8>
// BUF: vector.extract_strided_slice
// BUF: vector.fma
// BUF: vector.transfer_write %{{.+}} : vector<16xf32>, memref<6x40xf32>
#x8 = affine_map<(m, n, k) -> (m, k)>
#q8 = affine_map<(m, n, k) -> (k, n)>
#s8 = affine_map<(m, n, k) -> (k floordiv 64, n)>
#y8 = affine_map<(m, n, k) -> (m, n)>
func.func @int8_tail(%x: tensor<6x64xf32>, %q: tensor<64x40xi8>, %s: tensor<1x40xf32>) -> tensor<6x40xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<6x40xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e : tensor<6x40xf32>) -> tensor<6x40xf32>
  %y = linalg.generic {indexing_maps = [#x8, #q8, #s8, #y8], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %q, %s : tensor<6x64xf32>, tensor<64x40xi8>, tensor<1x40xf32>) outs(%acc : tensor<6x40xf32>) {
  ^bb0(%a: f32, %b: i8, %sc: f32, %o: f32):
    %f = arith.sitofp %b : i8 to f32
    %w = arith.mulf %f, %sc : f32
    %p = arith.mulf %a, %w : f32
    %sum = arith.addf %o, %p : f32
    linalg.yield %sum : f32
  } -> tensor<6x40xf32>
  return %y : tensor<6x40xf32>
}

// -----

// A generic of the same form whose body computes something else (here the scale multiplies
// x, not the weight: the same ops, wired otherwise) is not taken.
// CHECK-LABEL: func.func @other_body
// CHECK-NOT: dequant_gemm
#x8 = affine_map<(m, n, k) -> (m, k)>
#q8 = affine_map<(m, n, k) -> (k, n)>
#s8 = affine_map<(m, n, k) -> (k floordiv 64, n)>
#y8 = affine_map<(m, n, k) -> (m, n)>
func.func @other_body(%x: tensor<6x64xf32>, %q: tensor<64x40xi8>, %s: tensor<1x40xf32>) -> tensor<6x40xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<6x40xf32>
  %acc = linalg.fill ins(%c0 : f32) outs(%e : tensor<6x40xf32>) -> tensor<6x40xf32>
  %y = linalg.generic {indexing_maps = [#x8, #q8, #s8, #y8], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %q, %s : tensor<6x64xf32>, tensor<64x40xi8>, tensor<1x40xf32>) outs(%acc : tensor<6x40xf32>) {
  ^bb0(%a: f32, %b: i8, %sc: f32, %o: f32):
    %f = arith.sitofp %b : i8 to f32
    %w = arith.mulf %a, %sc : f32
    %p = arith.mulf %f, %w : f32
    %sum = arith.addf %o, %p : f32
    linalg.yield %sum : f32
  } -> tensor<6x40xf32>
  return %y : tensor<6x40xf32>
}
