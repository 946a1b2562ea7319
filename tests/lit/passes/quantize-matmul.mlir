// RUN: qmlir-opt %s --split-input-file --qmlir-quantize-matmul | FileCheck %s --check-prefix=STATIC
// RUN: qmlir-opt %s --split-input-file --qmlir-quantize-matmul='act=dynamic' | FileCheck %s --check-prefix=DYN
// RUN: qmlir-opt %s --split-input-file --qmlir-quantize-matmul='act=none weight-type=i4 granularity=group group-size=2' | FileCheck %s --check-prefix=W4

// Weight [2x2] quantized per output channel at compile time: column absmax / 127.
// STATIC-LABEL: func.func @linear
// STATIC: %[[WS:.+]] = arith.constant dense<{{\[\[}}127, -64], [-64, 127]]> : tensor<2x2xi8>
// STATIC: %[[WQ:.+]] = quant.scast %[[WS]] : tensor<2x2xi8> to tensor<2x2x!quant.uniform<i8:f32:1, {0.01574803{{[0-9]+}},0.03149606{{[0-9]+}}}>>
// STATIC: %[[WD:.+]] = quant.dcast %[[WQ]]
// STATIC: %[[XQ:.+]] = quant.qcast %arg0 : tensor<3x2xf32> to tensor<3x2x!quant.uniform<i8:f32, 0.0314960{{[0-9]+}}>>
// STATIC: %[[XD:.+]] = quant.dcast %[[XQ]]
// STATIC: linalg.matmul {qmlir.act_absmax = 4.000000e+00 : f32} ins(%[[XD]], %[[WD]] : tensor<3x2xf32>, tensor<2x2xf32>)

// Dynamic: per-token scales at run time, an i8 x i8 -> i32 matmul and one rescale.
// DYN-LABEL: func.func @linear
// DYN: arith.maximumf %{{.+}}, %{{.+}} : f32
// DYN: math.roundeven
// DYN: arith.fptosi %{{.+}} : f32 to i8
// DYN: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<3x2xi8>, tensor<2x2xi8>) outs(%{{.+}} : tensor<3x2xi32>)
// DYN: arith.sitofp %{{.+}} : i32 to f32

// int4 groups of 2 along K, weight-only: a sub-channel type, and the matmul stays float.
// W4-LABEL: func.func @linear
// W4: quant.scast %{{.+}} : tensor<2x2xi8> to tensor<2x2x!quant.uniform<i8<-8:7>:f32:{0:2, 1:1}, {{[{][{]}}0.2857{{[0-9]+}}, 0.5714{{[0-9]+}}}}>>
// W4-NOT: quant.qcast
// W4: linalg.matmul
func.func @linear(%x: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[2.0, -2.0], [-1.0, 4.0]]> : tensor<2x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul {qmlir.act_absmax = 4.0 : f32} ins(%x, %w : tensor<3x2xf32>, tensor<2x2xf32>) outs(%f : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// A weight that is a function argument is not a constant: nothing to quantize.
// STATIC-LABEL: func.func @not_constant
// STATIC-NOT: quant.
// STATIC: linalg.matmul ins(%arg0, %arg1
func.func @not_constant(%x: tensor<3x2xf32>, %w: tensor<2x2xf32>) -> tensor<3x2xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x2xf32>, tensor<2x2xf32>) outs(%f : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}
