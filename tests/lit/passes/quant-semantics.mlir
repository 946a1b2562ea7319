// The named pipeline qmlir-quant-semantics (first in every target's pipeline) expands into its
// two passes; on a W8A8 matmul (per-axis i8 weight, per-tensor i8 activation with zero point 2)
// it leaves an i8 x i8 -> i32 linalg.matmul, the activation quantized with round-half-even and
// saturation, and the scales and zero-point correction in an f32 epilogue: no quant op is left.

// RUN: qmlir-opt %s --qmlir-quant-semantics | FileCheck %s
// RUN: qmlir-opt %s --pass-pipeline='builtin.module(qmlir-quant-semantics)' | FileCheck %s
// RUN: qmlir-opt %s --qmlir-quant-semantics | FileCheck %s --check-prefix=NOQUANT
// RUN: qmlir-opt %s --qmlir-quant-semantics --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=PIPE

// No quant op or type anywhere in the output.
// NOQUANT-NOT: quant

// PIPE: builtin.module(qmlir-fuse-quantized-matmul{strict=false},qmlir-lower-quant)

// CHECK-LABEL: func.func @w8a8(%arg0: tensor<3x2xf32>) -> tensor<3x4xf32>
// CHECK-NOT: quant.
// CHECK-DAG: %[[W:.+]] = arith.constant dense<{{\[\[}}1, 2, 3, 4], [2, 2, 2, 2]]> : tensor<2x4xi8>
// CHECK-DAG: %[[COLSUM:.+]] = arith.constant dense<{{\[\[}}6, 8, 10, 12]]> : tensor<1x4xi32>
// CHECK: %[[XQ:.+]] = linalg.generic {{.+}} ins(%arg0 : tensor<3x2xf32>) outs(%{{.+}} : tensor<3x2xi8>)
// CHECK: math.roundeven
// CHECK: arith.maximumf
// CHECK: arith.minimumf
// CHECK: arith.fptosi %{{.+}} : f32 to i8
// CHECK: %[[ACC:.+]] = linalg.matmul ins(%[[XQ]], %[[W]] : tensor<3x2xi8>, tensor<2x4xi8>) outs(%{{.+}} : tensor<3x4xi32>) -> tensor<3x4xi32>
// CHECK: linalg.generic
// CHECK: arith.subi
// CHECK: arith.sitofp %{{.+}} : i32 to f32
// CHECK: arith.mulf
// CHECK-NOT: quant.
// CHECK-NOT: linalg.matmul
// CHECK: return
func.func @w8a8(%x: tensor<3x2xf32>) -> tensor<3x4xf32> {
  %ws = arith.constant dense<[[1, 2, 3, 4], [2, 2, 2, 2]]> : tensor<2x4xi8>
  %wq = quant.scast %ws : tensor<2x4xi8> to tensor<2x4x!quant.uniform<i8:f32:1, {0.1, 0.2, 0.3, 0.4}>>
  %wd = quant.dcast %wq : tensor<2x4x!quant.uniform<i8:f32:1, {0.1, 0.2, 0.3, 0.4}>> to tensor<2x4xf32>
  %xq = quant.qcast %x : tensor<3x2xf32> to tensor<3x2x!quant.uniform<i8:f32, 0.5:2>>
  %xd = quant.dcast %xq : tensor<3x2x!quant.uniform<i8:f32, 0.5:2>> to tensor<3x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x4xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x4xf32>) -> tensor<3x4xf32>
  %y = linalg.matmul ins(%xd, %wd : tensor<3x2xf32>, tensor<2x4xf32>) outs(%f : tensor<3x4xf32>) -> tensor<3x4xf32>
  return %y : tensor<3x4xf32>
}
