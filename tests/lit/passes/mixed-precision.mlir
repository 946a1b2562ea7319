// RUN: qmlir-opt %s --qmlir-mixed-precision | FileCheck %s
// RUN: qmlir-opt %s --qmlir-mixed-precision='type=f16 ops=batch_matmul' | FileCheck %s --check-prefix=ONLYBMM

// CHECK-LABEL: func.func @block
// CHECK: arith.truncf %{{.+}} : f32 to bf16
// CHECK: linalg.matmul ins(%{{.+}}, %{{.+}} : tensor<4x8xbf16>, tensor<8x8xbf16>) outs(%{{.+}} : tensor<4x8xf32>)
// The reduction (softmax-style row max) stays f32:
// CHECK: linalg.generic {{.*}} ins(%{{.+}} : tensor<4x8xf32>) outs(%{{.+}} : tensor<4xf32>)
// CHECK: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<2x4x8xbf16>, tensor<2x8x4xbf16>) outs(%{{.+}} : tensor<2x4x4xf32>)

// ONLYBMM-LABEL: func.func @block
// ONLYBMM: linalg.matmul ins(%arg0, %arg1 : tensor<4x8xf32>, tensor<8x8xf32>)
// ONLYBMM: linalg.batch_matmul ins(%{{.+}}, %{{.+}} : tensor<2x4x8xf16>, tensor<2x8x4xf16>)
func.func @block(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %a: tensor<2x4x8xf32>, %b: tensor<2x8x4xf32>) -> (tensor<4xf32>, tensor<2x4x4xf32>) {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %y = linalg.matmul ins(%x, %w : tensor<4x8xf32>, tensor<8x8xf32>) outs(%f : tensor<4x8xf32>) -> tensor<4x8xf32>
  %ninf = arith.constant 0xFF800000 : f32
  %e1 = tensor.empty() : tensor<4xf32>
  %f1 = linalg.fill ins(%ninf : f32) outs(%e1 : tensor<4xf32>) -> tensor<4xf32>
  %m = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]}
       ins(%y : tensor<4x8xf32>) outs(%f1 : tensor<4xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %mx = arith.maximumf %in, %acc : f32
    linalg.yield %mx : f32
  } -> tensor<4xf32>
  %e2 = tensor.empty() : tensor<2x4x4xf32>
  %f2 = linalg.fill ins(%z : f32) outs(%e2 : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %bm = linalg.batch_matmul ins(%a, %b : tensor<2x4x8xf32>, tensor<2x8x4xf32>) outs(%f2 : tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  return %m, %bm : tensor<4xf32>, tensor<2x4x4xf32>
}
