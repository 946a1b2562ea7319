// RUN: not qmlir-opt %s --qmlir-quantize-matmul 2>&1 | FileCheck %s
// RUN: not qmlir-opt %s --qmlir-quantize-matmul='act=sometimes' 2>&1 | FileCheck %s --check-prefix=CHOICE
// RUN: not qmlir-opt %s --qmlir-quantize-matmul='group-size=abc' 2>&1 | FileCheck %s --check-prefix=TYPE

// CHECK: quantize-matmul-errors.mlir:[[@LINE+8]]:8: error: act=static needs the activation range: a 'qmlir.act_absmax' attribute on the matmul or the act-absmax option
// CHOICE: qmlir-opt: error: qmlir-quantize-matmul: option 'act' must be one of static, dynamic, none, got 'sometimes'
// TYPE: qmlir-opt: error: qmlir-quantize-matmul: option 'group-size' expects a int, got 'abc'
func.func @no_calibration(%x: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[2.0, -2.0], [-1.0, 4.0]]> : tensor<2x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x2xf32>) outs(%f : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}
