// RUN: qmlir-opt %s --qmlir-gpu-device-buffers | FileCheck %s

// Intermediates become views of one caller-allocated workspace (offsets aligned to 256 bytes),
// constants views of one constants buffer filled once by @f_upload_constants, copies linalg.copy.
// CHECK-LABEL: func.func @f(
// CHECK-SAME: %{{.+}}: memref<4x8xf32>, %{{.+}}: memref<4x8xf32>, %[[C:[a-z0-9]+]]: memref<256xi8>, %[[W:[a-z0-9]+]]: memref<512xi8>)
// CHECK-SAME: qmlir.constant_bytes = 256 : i64, qmlir.workspace_bytes = 512 : i64
// CHECK: memref.view %[[W]][%c0{{.*}}][] : memref<512xi8> to memref<4x8xf32>
// CHECK: memref.view %[[C]][%c0{{.*}}][] : memref<256xi8> to memref<8xf32>
// CHECK: memref.view %[[W]][%c256{{.*}}][] : memref<512xi8> to memref<4x8xf32>
// CHECK: linalg.copy
// CHECK-NOT: memref.alloc
// CHECK-NOT: memref.copy
// CHECK-LABEL: func.func @f_upload_constants(%{{.+}}: memref<256xi8>)
// CHECK: %[[G:.+]] = memref.get_global @cst : memref<8xf32>
// CHECK: gpu.memcpy %{{.+}}, %[[G]] : memref<8xf32>, memref<8xf32>
memref.global "private" constant @cst : memref<8xf32> = dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]>
func.func @f(%x: memref<4x8xf32>, %out: memref<4x8xf32>) {
  %a = memref.alloc() : memref<4x8xf32>
  %w = memref.get_global @cst : memref<8xf32>
  %b = memref.alloc() : memref<4x8xf32>
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>],
                  iterator_types = ["parallel", "parallel"]} ins(%x, %w : memref<4x8xf32>, memref<8xf32>) outs(%a : memref<4x8xf32>) {
  ^bb0(%i: f32, %j: f32, %o: f32):
    %r = arith.mulf %i, %j : f32
    linalg.yield %r : f32
  }
  memref.copy %a, %b : memref<4x8xf32> to memref<4x8xf32>
  memref.copy %b, %out : memref<4x8xf32> to memref<4x8xf32>
  memref.dealloc %a : memref<4x8xf32>
  return
}
