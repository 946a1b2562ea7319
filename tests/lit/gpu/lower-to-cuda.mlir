// RUN: qmlir-opt %s --split-input-file --qmlir-lower-to-cuda='chip=sm_90' | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-lower-to-cuda='chip=sm_80 features=+ptx80' | FileCheck %s --check-prefix=SM80

// A matmul: the fill and the matmul become two kernels (64x16 outputs, one thread each, 4 blocks
// of 256), launched on one stream that is created, synchronized and destroyed once per call.
// CHECK-LABEL: llvm.func @mm(
// CHECK: %[[S:.+]] = llvm.call @mgpuStreamCreate()
// CHECK: gpu.launch_func <%[[S]] : !llvm.ptr> @mm_kernel::@mm_kernel blocks in (%{{.+}}, %{{.+}}, %{{.+}}) threads in (%{{.+}}, %{{.+}}, %{{.+}})
// CHECK: gpu.launch_func <%[[S]] : !llvm.ptr> @mm_kernel_0::@mm_kernel
// CHECK: llvm.call @mgpuStreamSynchronize(%[[S]])
// CHECK: llvm.call @mgpuStreamDestroy(%[[S]])
// CHECK: gpu.binary @mm_kernel
// CHECK-SAME: .target sm_90
// CHECK-SAME: .visible .entry mm_kernel(
// CHECK-SAME: .maxntid 256, 1, 1
// CHECK: gpu.binary @mm_kernel_0
// CHECK-SAME: .visible .entry mm_kernel(
// CHECK-SAME: .maxntid 256, 1, 1
// CHECK-SAME: mul.rn.f32
// SM80: .target sm_80
func.func @mm(%a: tensor<64x32xf32>, %b: tensor<32x16xf32>) -> tensor<64x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<64x16xf32>) -> tensor<64x16xf32>
  %y = linalg.matmul ins(%a, %b : tensor<64x32xf32>, tensor<32x16xf32>) outs(%f : tensor<64x16xf32>) -> tensor<64x16xf32>
  return %y : tensor<64x16xf32>
}

// -----

// int8 storage, i32 accumulation (the quantized IR after qmlir-lower-quant): bytes are loaded
// and multiplied as integers; the accumulator stays in a register across the K loop.
// CHECK-LABEL: llvm.func @int8_mm(
// CHECK: gpu.binary @int8_mm_kernel_0
// CHECK-SAME: ld.global.s8
// CHECK-SAME: mul.wide.s16
// CHECK-NOT: st.global{{.*}}L__BB0_2
func.func @int8_mm(%a: tensor<8x64xi8>, %b: tensor<64x32xi8>) -> tensor<8x32xi32> {
  %z = arith.constant 0 : i32
  %e = tensor.empty() : tensor<8x32xi32>
  %f = linalg.fill ins(%z : i32) outs(%e : tensor<8x32xi32>) -> tensor<8x32xi32>
  %y = linalg.matmul ins(%a, %b : tensor<8x64xi8>, tensor<64x32xi8>) outs(%f : tensor<8x32xi32>) -> tensor<8x32xi32>
  return %y : tensor<8x32xi32>
}

// -----

// A row softmax: reductions over the last dimension run one thread per row (8 rows: one block
// of 32 threads); elementwise kernels one thread per element; exp is inlined (no libdevice call).
// CHECK-LABEL: llvm.func @softmax(
// CHECK-COUNT-2: .maxntid 32, 1, 1
// CHECK: ex2.approx
#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
func.func @softmax(%x: tensor<8x32xf32>) -> tensor<8x32xf32> {
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  %e8 = tensor.empty() : tensor<8xf32>
  %m0 = linalg.fill ins(%ninf : f32) outs(%e8 : tensor<8xf32>) -> tensor<8xf32>
  %m = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<8x32xf32>) outs(%m0 : tensor<8xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %r = arith.maximumf %acc, %in : f32
    linalg.yield %r : f32
  } -> tensor<8xf32>
  %e = tensor.empty() : tensor<8x32xf32>
  %p = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%x, %m : tensor<8x32xf32>, tensor<8xf32>) outs(%e : tensor<8x32xf32>) {
  ^bb0(%in: f32, %mx: f32, %out: f32):
    %d = arith.subf %in, %mx : f32
    %x2 = math.exp %d : f32
    linalg.yield %x2 : f32
  } -> tensor<8x32xf32>
  %s0 = linalg.fill ins(%zero : f32) outs(%e8 : tensor<8xf32>) -> tensor<8xf32>
  %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
      ins(%p : tensor<8x32xf32>) outs(%s0 : tensor<8xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %r = arith.addf %acc, %in : f32
    linalg.yield %r : f32
  } -> tensor<8xf32>
  %e2 = tensor.empty() : tensor<8x32xf32>
  %y = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]}
      ins(%p, %s : tensor<8x32xf32>, tensor<8xf32>) outs(%e2 : tensor<8x32xf32>) {
  ^bb0(%in: f32, %sum: f32, %out: f32):
    %q = arith.divf %in, %sum : f32
    linalg.yield %q : f32
  } -> tensor<8x32xf32>
  return %y : tensor<8x32xf32>
}
