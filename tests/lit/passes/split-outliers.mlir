// RUN: qmlir-opt %s --qmlir-split-outliers='threshold=6.0' | FileCheck %s --check-prefix=STATIC
// RUN: qmlir-opt %s --qmlir-split-outliers='threshold=6.0 mode=dynamic outlier-type=bf16' | FileCheck %s --check-prefix=DYN
// RUN: qmlir-opt %s --qmlir-split-outliers='threshold=inf' | FileCheck %s --check-prefix=NONE

// Channel 1's calibrated absmax (40) exceeds 6: it goes to the f16 path, channels 0 and 2
// (masked, weight row 1 zeroed) to the int8 path with the scale of the regular channels (3/127).
// STATIC-LABEL: func.func @linear
// STATIC: arith.constant dense<[1, 0, 1]> : tensor<3xi8>
// STATIC: quant.qcast %{{.+}} : tensor<2x3xf32> to tensor<2x3x!quant.uniform<i8:f32, 0.023622{{[0-9]+}}>>
// STATIC: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<2x3xf32>, tensor<3x2xf32>)
// STATIC: %[[IDX:.+]] = arith.constant dense<1> : tensor<1xi64>
// STATIC: tensor.extract %arg0
// STATIC: arith.truncf %{{.+}} : f32 to f16
// STATIC: arith.constant dense<{{\[\[}}5.000000e-01, 2.500000e-01]]> : tensor<1x2xf16>
// STATIC: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<2x1xf16>, tensor<1x2xf16>) outs(%{{.+}} : tensor<2x2xf32>)
// STATIC: arith.addf

// Dynamic: which channels are outliers is decided per input, by a mask.
// DYN-LABEL: func.func @linear
// DYN: math.absf
// DYN: arith.cmpf ogt
// DYN: arith.ori %{{.+}}, %{{.+}} : i8
// DYN: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<2x3xi8>, tensor<3x2xi8>) outs(%{{.+}} : tensor<2x2xi32>)
// DYN: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<2x3xbf16>, tensor<3x2xbf16>) outs(%{{.+}} : tensor<2x2xf32>)

// threshold=inf: no outliers, the plain int8 form.
// NONE-LABEL: func.func @linear
// NONE-NOT: f16
// NONE: quant.qcast %arg0
// NONE-NOT: tensor.extract
func.func @linear(%x: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %w = arith.constant dense<[[1.0, -1.0], [0.5, 0.25], [2.0, 0.0]]> : tensor<3x2xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<2x2xf32>) -> tensor<2x2xf32>
  %y = linalg.matmul {qmlir.act_channel_absmax = dense<[2.0, 40.0, 3.0]> : tensor<3xf32>}
         ins(%x, %w : tensor<2x3xf32>, tensor<3x2xf32>) outs(%f : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %y : tensor<2x2xf32>
}
