// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='features=avx512_vnni threads=2' | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-select-kernels='features=avx512_vnni threads=2' --one-shot-bufferize='bufferize-function-boundaries=1' --qmlir-expand-kernels='stage=buffers' | FileCheck %s --check-prefix=BUF

// On tensors selection records the choice (bufferization rejects the intrinsic call, so the
// kernel expands at the buffers stage; the attribute survives bufferization on the op);
// on buffers it becomes the VNNI kernel: panels packed with shuffles and column sums,
// vpdpbusd on (x xor 0x80) and the packed weights, 128 x column sum subtracted.
// CHECK-LABEL: func.func @w8a8
// CHECK: linalg.matmul {qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "int8_vnni", nc = 64 : i64}}
// BUF-LABEL: func.func @w8a8
// BUF-NOT: linalg.matmul
// BUF: scf.forall (%{{.+}}) in (2)
// BUF: memref.alloc() {alignment = 64 : i64} : memref<16x4x64xi8>
// BUF: vector.shuffle
// BUF: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.+}}, %{{.+}}, %{{.+}}) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// BUF: arith.shli
// BUF: arith.xori
// BUF: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// BUF: arith.subi
// BUF: memref.dealloc
func.func @w8a8(%x: tensor<8x64xi8>, %w: tensor<64x128xi8>) -> tensor<8x128xi32> {
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<8x128xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<8x128xi32>) -> tensor<8x128xi32>
  %y = linalg.matmul ins(%x, %w : tensor<8x64xi8>, tensor<64x128xi8>) outs(%f : tensor<8x128xi32>) -> tensor<8x128xi32>
  return %y : tensor<8x128xi32>
}

// -----

// N not a multiple of 64 columns: left to the portable schedule (expanded at the tensors stage).
// CHECK-LABEL: func.func @narrow
// CHECK: linalg.matmul {qmlir.kernel = {name = "portable", nc = 0 : i64, schedule = "outer", tiles = array<i64: 1, 16, 1>}}
// BUF-LABEL: func.func @narrow
// BUF: linalg.matmul {qmlir.kernel = {name = "portable"
func.func @narrow(%x: tensor<8x64xi8>, %w: tensor<64x48xi8>) -> tensor<8x48xi32> {
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<8x48xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<8x48xi32>) -> tensor<8x48xi32>
  %y = linalg.matmul ins(%x, %w : tensor<8x64xi8>, tensor<64x48xi8>) outs(%f : tensor<8x48xi32>) -> tensor<8x48xi32>
  return %y : tensor<8x48xi32>
}
