// RUN: qmlir-opt %s --split-input-file --qmlir-gpu-map-loops | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --qmlir-gpu-map-loops='block-size=128' | FileCheck %s --check-prefix=B128

// A sum over dim 0 (reduction before the parallel dimension): interchanged so that the 32
// columns map to threads, the 8 rows are summed sequentially in each thread with the
// accumulator carried in a register (one load before the loop, one store after).
// CHECK-LABEL: func.func @sum_dim0
// CHECK: gpu.launch blocks(%{{.+}}) in (%{{.+}} = %c1{{.*}}, %{{.+}} = %c1{{.*}}, %{{.+}} = %c1{{.*}}) threads(%{{.+}}) in (%{{.+}} = %c32{{.*}}, %{{.+}} = %c1{{.*}}, %{{.+}} = %c1{{.*}})
// CHECK: %[[ID:.+]] = arith.addi
// CHECK: %[[IN:.+]] = arith.cmpi ult, %[[ID]], %c32
// CHECK: scf.if %[[IN]]
// CHECK: %[[INIT:.+]] = memref.load %arg1[%[[ID]]]
// CHECK: %[[SUM:.+]] = scf.for %{{.+}} = %c0 to %c8 step %c1{{.*}} iter_args(%[[ACC:.+]] = %[[INIT]]) -> (f32)
// CHECK: memref.load %arg0
// CHECK: arith.addf %[[ACC]]
// CHECK-NOT: memref.store
// CHECK: scf.yield
// CHECK: memref.store %[[SUM]], %arg1[%[[ID]]]
// CHECK: gpu.terminator
#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>
func.func @sum_dim0(%x: memref<8x32xf32>, %out: memref<32xf32>) {
  linalg.generic {indexing_maps = [#id, #col], iterator_types = ["reduction", "parallel"]}
      ins(%x : memref<8x32xf32>) outs(%out : memref<32xf32>) {
  ^bb0(%in: f32, %acc: f32):
    %r = arith.addf %acc, %in : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// Rank 4 elementwise (2*3*5*700 = 21000 elements): one linear thread id, bounds-checked,
// delinearized innermost-first; 83 blocks of 256 (165 of 128).
// CHECK-LABEL: func.func @rank4
// CHECK: gpu.launch blocks(%{{.+}}) in (%{{.+}} = %c83{{.*}}, %{{.+}}, %{{.+}}) threads(%{{.+}}) in (%{{.+}} = %c256
// CHECK: arith.cmpi ult, %{{.+}}, %c21000
// CHECK: arith.remui %{{.+}}, %c700
// CHECK: arith.divui %{{.+}}, %c700
// B128: gpu.launch blocks(%{{.+}}) in (%{{.+}} = %c165{{.*}}, %{{.+}}, %{{.+}}) threads(%{{.+}}) in (%{{.+}} = %c128
#id4 = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
func.func @rank4(%x: memref<2x3x5x700xf32>, %out: memref<2x3x5x700xf32>) {
  linalg.generic {indexing_maps = [#id4, #id4], iterator_types = ["parallel", "parallel", "parallel", "parallel"]}
      ins(%x : memref<2x3x5x700xf32>) outs(%out : memref<2x3x5x700xf32>) {
  ^bb0(%in: f32, %o: f32):
    %r = math.exp %in : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// A rank-0 op has no loop: one thread runs its loads and store.
// CHECK-LABEL: func.func @scalar
// CHECK: gpu.launch blocks(%{{.+}}) in (%{{.+}} = %c1{{.*}}, %{{.+}}, %{{.+}}) threads(%{{.+}}) in (%{{.+}} = %c1{{.*}}, %{{.+}}, %{{.+}})
// CHECK: memref.load %arg0[]
// CHECK: memref.store %{{.+}}, %arg1[]
func.func @scalar(%x: memref<f32>, %out: memref<f32>) {
  linalg.generic {indexing_maps = [affine_map<() -> ()>, affine_map<() -> ()>], iterator_types = []}
      ins(%x : memref<f32>) outs(%out : memref<f32>) {
  ^bb0(%in: f32, %o: f32):
    %r = arith.negf %in : f32
    linalg.yield %r : f32
  }
  return
}
