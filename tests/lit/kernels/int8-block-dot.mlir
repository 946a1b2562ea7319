// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='features=avx512_vnni threads=2' | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='features=avx512_vnni threads=2' --one-shot-bufferize='bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map' --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=BUF
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='features=avx512_vnni threads=2' --one-shot-bufferize='bufferize-function-boundaries=1' --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=STRIDED
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='threads=2' | FileCheck %s --check-prefix=PORTABLE

// The block-scaled integer matmul (qmlir/ir/block_matmul.py: W8A8 with activation scales per
// block of 4 here, panel-layout weights) takes int8_block_dot on a CPU with AVX512_VNNI:
// rows in tiles of 3 (M = 3), one task (a small weight). On buffers: the block sums of x,
// then per panel and block four 64-byte weight reads, xor 0x80 (the unsigned operand),
// vpdpbusd with x's four bytes broadcast, 128 x the block sum of x subtracted, one rescale
// per block added into y. Without the feature the generic stays as written.
// CHECK-LABEL: func.func @block
// CHECK: linalg.generic {{.*}}qmlir.kernel = {mr = 3 : i64, name = "int8_block_dot", tasks = 1 : i64}
// BUF-LABEL: func.func @block
// BUF-NOT: linalg.generic
// BUF: memref.alloc() {alignment = 64 : i64} : memref<3x2xi32>
// BUF: vector.reduction <add>
// BUF: scf.forall (%{{.+}}) in (1)
// BUF: vector.transfer_read %{{.+}} : memref<2x2x256xi8>, vector<64xi8>
// BUF: arith.xori
// BUF: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.+}}, %{{.+}}, %{{.+}}) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// BUF: arith.shli
// BUF: arith.subi
// BUF: arith.sitofp
// BUF: arith.mulf
// BUF: arith.mulf
// BUF: arith.addf
// BUF: vector.transfer_write
// BUF: memref.dealloc
// A strided weight view is copied to a contiguous buffer first.
// STRIDED-LABEL: func.func @block
// STRIDED: memref.copy %{{.+}}, %{{.+}} : memref<2x2x64x4xi8, strided<[?, ?, ?, ?], offset: ?>> to memref<2x2x64x4xi8>
// STRIDED: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// PORTABLE-LABEL: func.func @block
// PORTABLE-NOT: int8_block_dot
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

// -----

// A block that ends at the wrong index (b == 2 of 4: not the form) is not the kernel's.
// CHECK-LABEL: func.func @wrong_end
// CHECK-NOT: int8_block_dot
#x = affine_map<(m, n, g, b) -> (m, g, b)>
#w = affine_map<(m, n, g, b) -> (n floordiv 64, g + b floordiv 4, n mod 64, b mod 4)>
#sa = affine_map<(m, n, g, b) -> (m, g)>
#sw = affine_map<(m, n, g, b) -> (n floordiv 64, g, n mod 64)>
#y = affine_map<(m, n, g, b) -> (m, n)>
func.func @wrong_end(%x: tensor<1x2x4xi8>, %w: tensor<1x2x64x4xi8>, %sa: tensor<1x2xf32>, %sw: tensor<1x2x64xf32>, %init: tensor<1x64xf32>) -> tensor<1x64xf32> {
  %scratch = tensor.empty() : tensor<1x64xi32>
  %r:2 = linalg.generic {indexing_maps = [#x, #w, #sa, #sw, #y, #y], iterator_types = ["parallel", "parallel", "reduction", "reduction"]}
      ins(%x, %w, %sa, %sw : tensor<1x2x4xi8>, tensor<1x2x64x4xi8>, tensor<1x2xf32>, tensor<1x2x64xf32>)
      outs(%scratch, %init : tensor<1x64xi32>, tensor<1x64xf32>) {
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
    %i2 = arith.constant 2 : index
    %last = arith.cmpi eq, %k, %i2 : index
    %f = arith.sitofp %sum : i32 to f32
    %sc = arith.mulf %s1, %s2 : f32
    %t = arith.mulf %f, %sc : f32
    %n = arith.addf %o, %t : f32
    %out = arith.select %last, %n, %o : f32
    linalg.yield %sum, %out : i32, f32
  } -> (tensor<1x64xi32>, tensor<1x64xf32>)
  return %r#1 : tensor<1x64xf32>
}
