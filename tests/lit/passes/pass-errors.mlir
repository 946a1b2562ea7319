// Each pass names the op it cannot handle, at its location, and exits 1.
// RUN: not qmlir-opt %s --split-input-file --qmlir-split-outliers 2>&1 | FileCheck %s --check-prefix=SPLIT
// RUN: not qmlir-opt %s --split-input-file --qmlir-fuse-quantized-matmul 2>&1 | FileCheck %s --check-prefix=FUSE
// RUN: not qmlir-opt %s --qmlir-mixed-precision='ops=softmax' 2>&1 | FileCheck %s --check-prefix=MIXED

// SPLIT: pass-errors.mlir:[[@LINE+7]]:8: error: mode=static needs per-channel calibration: a 'qmlir.act_channel_absmax' attribute (dense [K]) on the matmul
// MIXED: error: qmlir-mixed-precision: unknown op kind(s) softmax (kinds: matmul, batch_matmul, conv)
func.func @no_calibration(%x: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[2.0, -2.0], [-1.0, 4.0]]> : tensor<2x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x2xf32>) outs(%f : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// FUSE: pass-errors.mlir:[[@LINE+8]]:8: error: weight zero points must be 0 (symmetric weights)
func.func @asymmetric_weight(%x: tensor<3x2xf32>, %wq: tensor<2x2x!quant.uniform<i8:f32:1, {0.1:1, 0.2:0}>>) -> tensor<3x2xf32> {
  %wd = quant.dcast %wq : tensor<2x2x!quant.uniform<i8:f32:1, {0.1:1, 0.2:0}>> to tensor<2x2xf32>
  %xq = quant.qcast %x : tensor<3x2xf32> to tensor<3x2x!quant.uniform<i8:f32, 0.5>>
  %xd = quant.dcast %xq : tensor<3x2x!quant.uniform<i8:f32, 0.5>> to tensor<3x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%xd, %wd : tensor<3x2xf32>, tensor<2x2xf32>) outs(%f : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}
