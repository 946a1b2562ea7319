# RUN: %python %s | FileCheck %s
# The IR qmlir.quantize'd linear layers import to, one section per mode: integer weight
# storage is a function argument, scales live in !quant.uniform types (and are not function
# arguments: nothing reads the buffers), activations are quant.qcast (static) or integer IR
# (dynamic per token or per block; block-dynamic weights come in the panel layout).
import torch
import qmlir
from qmlir.testing import print_ir

torch.manual_seed(0)
lin = torch.nn.Sequential(torch.nn.Linear(8, 4))
x = torch.randn(3, 8)
calib = [torch.randn(3, 8) for _ in range(2)]


def q(**cfg):
    return qmlir.quantize(lin, calib, qmlir.QuantConfig(skip=[], **cfg), progress=False)


# CHECK-LABEL: // int8 weight-only per channel
# CHECK: func.func @forward(%{{.+}}: tensor<3x8xf32>, %{{.+}}: tensor<8x4xi8>, %{{.+}}: tensor<4xf32>) -> tensor<3x4xf32>
# CHECK: %[[WQ:.+]] = quant.scast %{{.+}} : tensor<8x4xi8> to tensor<8x4x!quant.uniform<i8:f32:1, {{.+}}>>
# CHECK: %[[W:.+]] = quant.dcast %[[WQ]] : tensor<8x4x!quant.uniform<i8:f32:1, {{.+}}>> to tensor<8x4xf32>
# CHECK: linalg.matmul ins(%{{.+}}, %[[W]] : tensor<3x8xf32>, tensor<8x4xf32>) outs(%{{.+}} : tensor<3x4xf32>)
print_ir(q(), x, title="int8 weight-only per channel")

# CHECK-LABEL: // int4 weight-only, groups of 4, packed two per byte
# CHECK: func.func @forward(%{{.+}}: tensor<3x8xf32>, %{{.+}}: tensor<4x4xi8>, %{{.+}}: tensor<4xf32>) -> tensor<3x4xf32>
# CHECK: linalg.generic {indexing_maps = [#{{.+}}, #{{.+}}], iterator_types = ["parallel", "parallel"]} ins(%{{.+}} : tensor<4x4xi8>) outs(%{{.+}} : tensor<8x4xi8>)
# CHECK: arith.shrsi
# CHECK: linalg.index 0
# CHECK: arith.select
# CHECK: quant.scast %{{.+}} : tensor<8x4xi8> to tensor<8x4x!quant.uniform<i8<-8:7>:f32:{0:4, 1:1}, {{.+}}>>
# CHECK: quant.dcast
# CHECK: linalg.matmul
print_ir(q(weight_dtype="int4", weight_granularity="group", group_size=4), x,
         title="int4 weight-only, groups of 4, packed two per byte")

# CHECK-LABEL: // int4 weight-only, asymmetric groups of 4: zero points, unsigned nibbles
# CHECK: arith.andi
# CHECK: arith.shrui
# CHECK: quant.scast %{{.+}} : tensor<8x4xi8> to tensor<8x4x!quant.uniform<i8<0:15>:f32:{0:4, 1:1}, {{[{][{]}}{{[0-9.e+-]+}}:{{[0-9]+}},
print_ir(q(weight_dtype="int4", weight_granularity="group", group_size=4, weight_symmetric=False), x,
         title="int4 weight-only, asymmetric groups of 4: zero points, unsigned nibbles")

# CHECK-LABEL: // W8A8 static, asymmetric activations
# CHECK: quant.scast %{{.+}} : tensor<8x4xi8> to tensor<8x4x!quant.uniform<i8:f32:1, {{.+}}>>
# CHECK: %[[XQ:.+]] = quant.qcast %{{.+}} : tensor<3x8xf32> to tensor<3x8x!quant.uniform<i8:f32, {{[0-9.e+-]+}}:{{-?[0-9]+}}>>
# CHECK: %[[XD:.+]] = quant.dcast %[[XQ]]
# CHECK: linalg.matmul ins(%[[XD]], %{{.+}} : tensor<3x8xf32>, tensor<8x4xf32>)
print_ir(q(act_dtype="int8", act_calib="minmax", act_symmetric=False), x, title="W8A8 static, asymmetric activations")

# CHECK-LABEL: // W8A8 dynamic per token
# CHECK-NOT: quant.qcast
# CHECK: math.absf
# CHECK: math.roundeven
# CHECK: arith.fptosi %{{.+}} : f32 to i8
# CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<3x8xi8>, tensor<8x4xi8>) outs(%{{.+}} : tensor<3x4xi32>)
print_ir(q(act_dtype="int8", act_granularity="token"), x, title="W8A8 dynamic per token")

# CHECK-LABEL: // W8A8 dynamic per block of 4
# CHECK: func.func @forward(%{{.+}}: tensor<3x8xf32>, %{{.+}}: tensor<1x2x64x4xi8>, %{{.+}}: tensor<4xf32>) -> tensor<3x4xf32>
# CHECK: linalg.generic {{.+}} ins(%{{.+}} : tensor<3x2x4xf32>) outs(%{{.+}} : tensor<3x2xf32>)
# CHECK: math.absf
# CHECK: math.roundeven
# CHECK: %[[S:.+]] = arith.constant dense<{{.+}}> : tensor<1x2x64xf32>
# CHECK: %{{.+}}:2 = linalg.generic {{.+}} iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%{{.+}}, %{{.+}}, %{{.+}}, %[[S]] : tensor<3x2x4xi8>, tensor<1x2x64x4xi8>, tensor<3x2xf32>, tensor<1x2x64xf32>) outs(%{{.+}}, %{{.+}} : tensor<3x64xi32>, tensor<3x64xf32>)
# CHECK: linalg.index 3
# CHECK: arith.muli
# CHECK: arith.sitofp
# CHECK: tensor.extract_slice %{{.+}}#1[0, 0] [3, 4] [1, 1] : tensor<3x64xf32> to tensor<3x4xf32>
print_ir(q(act_dtype="int8", act_granularity="block", act_block=4), x, title="W8A8 dynamic per block of 4")

# CHECK-LABEL: // W8A8 static with outlier channels in f16
# CHECK: func.func @forward({{.+}}tensor<{{[0-9]+}}x4xf16>
# CHECK: quant.qcast
# CHECK: tensor.extract
# CHECK: arith.truncf %{{.+}} : f32 to f16
# CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<3x{{[0-9]+}}xf16>, tensor<{{[0-9]+}}x4xf16>) outs(%{{.+}} : tensor<3x4xf32>)
# CHECK: arith.addf
print_ir(q(act_dtype="int8", outlier_threshold=1.0), x, title="W8A8 static with outlier channels in f16")

# CHECK-LABEL: // bf16 weights
# CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<3x8xbf16>, tensor<8x4xbf16>) outs(%{{.+}} : tensor<3x4xf32>)
print_ir(q(weight_dtype="bf16"), x, title="bf16 weights")
