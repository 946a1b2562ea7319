// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx2 threads=2' | FileCheck %s
// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx2 threads=2' --one-shot-bufferize='bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map' --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=BUF
// RUN: qmlir-opt %s --qmlir-select-kernels='features=avx2,avx512_vnni threads=2' | FileCheck %s --check-prefix=VNNI

// The block-scaled integer matmul (qmlir/ir/block_matmul.py) takes int8_block_avx2 on a CPU
// with AVX2 and no AVX512_VNNI: M = 3 runs tiles of two rows over 16 columns of a panel (and
// the last row alone). On buffers: per panel, column tile and block, 16-byte weight reads
// sign-extended to i16, vpmaddwd with x's four bytes broadcast as i16 pairs, the two i32
// lanes of each column added by a shuffle, one rescale per block added into y. No block sums
// of x are subtracted for int8 weights (they are the signed operand as they are).
// CHECK-LABEL: func.func @block
// CHECK: linalg.generic {{.*}}qmlir.kernel = {cols = 16 : i64, mr = 2 : i64, name = "int8_block_avx2", tasks = 1 : i64}
// BUF-LABEL: func.func @block
// BUF-NOT: linalg.generic
// BUF: scf.forall (%{{.+}}) in (1)
// BUF: scf.for %{{.+}} = %{{.+}} to %{{.+}} step %{{.+}} {
// BUF: arith.extsi %{{.+}} : vector<4xi8> to vector<4xi16>
// BUF: vector.transfer_read %{{.+}} : memref<2x2x256xi8>, vector<16xi8>
// BUF: arith.extsi %{{.+}} : vector<16xi8> to vector<16xi16>
// BUF: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%{{.+}}, %{{.+}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>
// BUF: vector.shuffle %{{.+}}, %{{.+}} [0, 2, 4, 6, 8, 10, 12, 14] : vector<8xi32>, vector<8xi32>
// BUF: vector.shuffle %{{.+}}, %{{.+}} [1, 3, 5, 7, 9, 11, 13, 15] : vector<8xi32>, vector<8xi32>
// BUF: arith.sitofp %{{.+}} : vector<8xi32> to vector<8xf32>
// BUF: arith.mulf
// BUF: arith.mulf
// BUF: arith.addf
// BUF: vector.transfer_write
// BUF-NOT: llvm.x86.avx512
// With VNNI too, the VNNI kernel (higher priority) takes it.
// VNNI: qmlir.kernel = {mr = 3 : i64, name = "int8_block_dot", tasks = 1 : i64}
#x = affine_map<(m, n, g, b) -> (m, g, b)>
#w = affine_map<(m, n, g, b) -> (n floordiv 64, g + b floordiv 4, n mod 64, b mod 4)>
#sa = affine_map<(m, n, g, b) -> (m, g)>
#sw = affine_map<(m, n, g, b) -> (n floordiv 64, g, n mod 64)>
#y = affine_map<(m, n, g, b) -> (m, n)>
func.func @block(%x: tensor<3x2x4xi8>, %w: tensor<2x2x64x4xi8>, %sa: tensor<3x2xf32>, %sw: tensor<2x2x64xf32>) -> tensor<3x128xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x128xf32>
  %init = linalg.fill ins(%c0 : f32) outs(%e : tensor<3x128xf32>) -> tensor<3x128xf32>
  %scratch = tensor.empty() : tensor<3x128xi32>
  %r:2 = linalg.generic {indexing_maps = [#x, #w, #sa, #sw, #y, #y], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%x, %w, %sa, %sw : tensor<3x2x4xi8>, tensor<2x2x64x4xi8>, tensor<3x2xf32>, tensor<2x2x64xf32>)
      outs(%scratch, %init : tensor<3x128xi32>, tensor<3x128xf32>) {
  ^bb0(%a: i8, %b: i8, %s1: f32, %s2: f32, %acc: i32, %o: f32):
    %k = linalg.index 3 : index
    %ea = arith.extsi %a : i8 to i32
    %eb = arith.extsi %b : i8 to i32
    %p = arith.muli %ea, %eb : i32
    %i0 = arith.constant 0 : index
    %z = arith.constant 0 : i32
    %first = arith.cmpi eq, %k, %i0 : index
    %run = arith.select %first, %z, %acc : i32
    %sum = arith.addi %run, %p : i32
    %i3 = arith.constant 3 : index
    %last = arith.cmpi eq, %k, %i3 : index
    %f = arith.sitofp %sum : i32 to f32
    %sc = arith.mulf %s1, %s2 : f32
    %t = arith.mulf %f, %sc : f32
    %n = arith.addf %o, %t : f32
    %out = arith.select %last, %n, %o : f32
    linalg.yield %sum, %out : i32, f32
  } -> (tensor<3x128xi32>, tensor<3x128xf32>)
  return %r#1 : tensor<3x128xf32>
}
