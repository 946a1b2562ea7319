// The CPU target's named pipeline, qmlir-lower-to-cpu, expands into its stages in order (what
// --dump-pass-pipeline prints is the one pipeline string the target runs), lowers tensor IR
// to the LLVM dialect, and qmlir passes sit in one MLIR pass manager with upstream passes:
// nested in func.func(...), seen by --mlir-print-ir-after-all, and checked for their anchor.

// RUN: qmlir-opt %s --qmlir-lower-to-cpu='features=avx512_bf16,avx512_vnni threads=2' --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=PIPE
// RUN: qmlir-opt %s --qmlir-lower-to-cpu='features= threads=1' | FileCheck %s --check-prefix=LLVM
// RUN: qmlir-opt %s --pass-pipeline='builtin.module(func.func(qmlir-lower-quant), canonicalize)' | FileCheck %s --check-prefix=NESTED
// RUN: qmlir-opt %s --qmlir-protect-arguments --canonicalize --mlir-print-ir-after-all 2>&1 >/dev/null | FileCheck %s --check-prefix=DUMP
// RUN: not qmlir-opt %s --pass-pipeline='builtin.module(func.func(qmlir-outline-loops))' 2>&1 | FileCheck %s --check-prefix=ANCHOR

// PIPE: builtin.module(qmlir-fuse-quantized-matmul{strict=false},qmlir-lower-quant,
// PIPE-SAME: qmlir-protect-arguments,qmlir-polynomial-exp,
// PIPE-SAME: qmlir-fold-dequant-into-matmul,qmlir-fold-transpose-into-matmul,
// PIPE-SAME: qmlir-select-kernels{features=avx512_bf16,avx512_vnni threads=2},
// PIPE-SAME: qmlir-expand-kernels{stage=tensors},
// PIPE-SAME: qmlir-distinct-results,
// PIPE-SAME: one-shot-bufferize{bufferize-function-boundaries=1
// PIPE-SAME: buffer-results-to-out-params
// PIPE-SAME: qmlir-expand-kernels{stage=buffers},
// PIPE-SAME: func.func(convert-linalg-to-loops)
// PIPE-SAME: qmlir-outline-loops,
// PIPE-SAME: qmlir-forall-to-gomp{threads=2},
// PIPE-SAME: async-parallel-for{num-workers=2
// PIPE-SAME: convert-func-to-llvm
// PIPE-SAME: reconcile-unrealized-casts)

// Lowered: only LLVM dialect functions; results became out-parameters (no results); loop nests
// were outlined into noinline functions; the f32 matmul was vectorized (16-lane reductions).
// LLVM-NOT: func.func
// LLVM-NOT: linalg.
// LLVM-LABEL: llvm.func @linear(
// LLVM-SAME: ) {
// LLVM: llvm.call @linear_kernel{{[0-9]+}}(
// LLVM: llvm.return
// LLVM-LABEL: llvm.func @qcast(
// LLVM-SAME: ) {
// LLVM: llvm.func @linear_kernel{{[0-9]+}}({{.*}}) attributes {passthrough = ["noinline"]}
// LLVM: "llvm.intr.vector.reduce.fadd"({{.+}}) {{.*}}: (f32, vector<16xf32>) -> f32
// LLVM: llvm.intr.roundeven
// LLVM-NOT: func.func
// LLVM-NOT: memref.
// LLVM-NOT: scf.

// A qmlir function pass nested in func.func(...) runs over every function, then the upstream pass.
// NESTED-LABEL: func.func @qcast(%arg0: tensor<4xf32>) -> tensor<4xi8>
// NESTED-NOT: quant.
// NESTED: linalg.generic
// NESTED: math.roundeven
// NESTED: arith.fptosi %{{.+}} : f32 to i8

// DUMP: IR Dump After qmlir-protect-arguments
// DUMP: bufferization.writable = false
// DUMP: IR Dump After Canonicalizer (canonicalize)

// ANCHOR: error: qmlir-outline-loops runs on builtin.module; it cannot be nested in func.func(...)

func.func @linear(%x: tensor<4x64xf32>, %w: tensor<16x64xf32>, %b: tensor<16xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x16xf32>
  %wt = linalg.transpose ins(%w : tensor<16x64xf32>) outs(%e : tensor<64x16xf32>) permutation = [1, 0]
  %o = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x16xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  %bb = linalg.broadcast ins(%b : tensor<16xf32>) outs(%o : tensor<4x16xf32>) dimensions = [0]
  %r = linalg.add ins(%y, %bb : tensor<4x16xf32>, tensor<4x16xf32>) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %r : tensor<4x16xf32>
}

func.func @qcast(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5:3>> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:3>>
  return %q : tensor<4x!quant.uniform<i8:f32, 0.5:3>>
}
