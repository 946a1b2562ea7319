// RUN: not qmlir-opt %s --qmlir-lower-quant 2>&1 | FileCheck %s

// A quantized value consumed by an op that is not a cast cannot be lowered by this pass.
// CHECK: lower-quant-errors.mlir:{{[0-9]+}}:{{[0-9]+}}: error: 'quant.scast' remains after lowering (its value is used by linalg.copy)
func.func @f(%x: tensor<4xf32>) -> tensor<4xi8> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:0>>
  %e = tensor.empty() : tensor<4x!quant.uniform<i8:f32, 0.5:0>>
  %c = linalg.copy ins(%q : tensor<4x!quant.uniform<i8:f32, 0.5:0>>) outs(%e : tensor<4x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<4x!quant.uniform<i8:f32, 0.5:0>>
  %s = quant.scast %c : tensor<4x!quant.uniform<i8:f32, 0.5:0>> to tensor<4xi8>
  return %s : tensor<4xi8>
}
