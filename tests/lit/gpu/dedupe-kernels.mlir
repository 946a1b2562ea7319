// RUN: qmlir-opt %s --qmlir-gpu-dedupe-kernels | FileCheck %s

// Two launches of identical kernels (one per layer, say) share the first copy.
// CHECK: gpu.launch_func @k::@k
// CHECK-NEXT: gpu.launch_func @k::@k
// CHECK-NEXT: gpu.launch_func @k_1::@k
// CHECK: gpu.module @k
// CHECK-NOT: gpu.module @k_0
// CHECK: gpu.module @k_1
module attributes {gpu.container_module} {
  func.func @f(%x: memref<4xf32>) {
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    gpu.launch_func @k_0::@k blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    gpu.launch_func @k_1::@k blocks in (%c1, %c1, %c1) threads in (%c4, %c1, %c1) args(%x : memref<4xf32>)
    return
  }
  gpu.module @k {
    gpu.func @k(%x: memref<4xf32>) kernel {
      %t = gpu.thread_id x
      %v = memref.load %x[%t] : memref<4xf32>
      %r = arith.addf %v, %v : f32
      memref.store %r, %x[%t] : memref<4xf32>
      gpu.return
    }
  }
  gpu.module @k_0 {
    gpu.func @k(%x: memref<4xf32>) kernel {
      %t = gpu.thread_id x
      %v = memref.load %x[%t] : memref<4xf32>
      %r = arith.addf %v, %v : f32
      memref.store %r, %x[%t] : memref<4xf32>
      gpu.return
    }
  }
  gpu.module @k_1 {
    gpu.func @k(%x: memref<4xf32>) kernel {
      %t = gpu.thread_id x
      %v = memref.load %x[%t] : memref<4xf32>
      %r = arith.mulf %v, %v : f32
      memref.store %r, %x[%t] : memref<4xf32>
      gpu.return
    }
  }
}
