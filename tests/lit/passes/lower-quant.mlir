// RUN: qmlir-opt %s --split-input-file --qmlir-lower-quant | FileCheck %s

// Per-tensor qcast: divide, round half to even, add the zero point, saturate, convert.
// CHECK-LABEL: func.func @qcast_per_tensor
// CHECK-SAME: (%[[X:.+]]: tensor<4xf32>) -> tensor<4xi8>
// CHECK-DAG: %[[HI:.+]] = arith.constant 1.270000e+02 : f32
// CHECK-DAG: %[[LO:.+]] = arith.constant -1.280000e+02 : f32
// CHECK-DAG: %[[ZP:.+]] = arith.constant 3.000000e+00 : f32
// CHECK-DAG: %[[S:.+]] = arith.constant 5.000000e-01 : f32
// CHECK: linalg.generic {{.*}} ins(%[[X]] : tensor<4xf32>) outs(%{{.+}} : tensor<4xi8>)
// CHECK: %[[D:.+]] = arith.divf %{{.+}}, %[[S]] : f32
// CHECK: %[[R:.+]] = math.roundeven %[[D]] : f32
// CHECK: %[[A:.+]] = arith.addf %[[R]], %[[ZP]] : f32
// CHECK: %[[M:.+]] = arith.maximumf %[[A]], %[[LO]] : f32
// CHECK: %[[C:.+]] = arith.minimumf %[[M]], %[[HI]] : f32
// CHECK: arith.fptosi %{{.+}} : f32 to i8
// CHECK-NOT: quant.
func.func @qcast_per_tensor(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5:3>> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:3>>
  return %q : tensor<4x!quant.uniform<i8:f32, 0.5:3>>
}

// -----

// Per-axis dcast: scales and zero points are constant tensors read along the axis.
// CHECK-DAG: #[[AXIS:.+]] = affine_map<(d0, d1) -> (d0)>
// CHECK-LABEL: func.func @dcast_per_axis
// CHECK-SAME: (%[[Q:.+]]: tensor<2x3xi8>) -> tensor<2x3xf32>
// CHECK-DAG: %[[SC:.+]] = arith.constant dense<[1.000000e-01, 2.000000e-01]> : tensor<2xf32>
// CHECK-DAG: %[[ZPS:.+]] = arith.constant dense<[1, -2]> : tensor<2xi64>
// CHECK: linalg.generic {indexing_maps = [#{{.+}}, #[[AXIS]], #[[AXIS]], #{{.+}}]
// CHECK-SAME: ins(%[[Q]], %[[SC]], %[[ZPS]] : tensor<2x3xi8>, tensor<2xf32>, tensor<2xi64>)
// CHECK: arith.sitofp %{{.+}} : i8 to f32
// CHECK: arith.subf
// CHECK: arith.mulf
func.func @dcast_per_axis(%q: tensor<2x3x!quant.uniform<i8:f32:0, {0.1:1, 0.2:-2}>>) -> tensor<2x3xf32> {
  %x = quant.dcast %q : tensor<2x3x!quant.uniform<i8:f32:0, {0.1:1, 0.2:-2}>> to tensor<2x3xf32>
  return %x : tensor<2x3xf32>
}

// -----

// Sub-channel: block-wise scales through a floordiv map.
// CHECK-DAG: #[[BLOCK:.+]] = affine_map<(d0, d1) -> (d0, d1 floordiv 2)>
// CHECK-LABEL: func.func @qcast_sub_channel
// CHECK: linalg.generic {indexing_maps = [#{{.+}}, #[[BLOCK]], #[[BLOCK]], #{{.+}}]
// CHECK: math.roundeven
func.func @qcast_sub_channel(%x: tensor<2x4xf32>) -> tensor<2x4x!quant.uniform<i8:f32:{0:1, 1:2}, {{0.1, 0.2}, {0.3, 0.4}}>> {
  %q = quant.qcast %x : tensor<2x4xf32> to tensor<2x4x!quant.uniform<i8:f32:{0:1, 1:2}, {{0.1, 0.2}, {0.3, 0.4}}>>
  return %q : tensor<2x4x!quant.uniform<i8:f32:{0:1, 1:2}, {{0.1, 0.2}, {0.3, 0.4}}>>
}

// -----

// A quantize-dequantize round trip leaves no quant ops; unsigned storage uses fptoui/uitofp.
// CHECK-LABEL: func.func @round_trip_u8
// CHECK: arith.fptoui %{{.+}} : f32 to i8
// CHECK: arith.uitofp %{{.+}} : i8 to f32
// CHECK-NOT: quant.
func.func @round_trip_u8(%x: tensor<8xf32>) -> tensor<8xf32> {
  %q = quant.qcast %x : tensor<8xf32> to tensor<8x!quant.uniform<u8:f32, 0.25:128>>
  %y = quant.dcast %q : tensor<8x!quant.uniform<u8:f32, 0.25:128>> to tensor<8xf32>
  return %y : tensor<8xf32>
}
