// qmlir-drop-mutated-results, after bufferization: a mutated result computed in its argument's
// buffer (an in-place KV-cache write) is just dropped; one computed elsewhere (a counter's + 1)
// is copied into its argument first; a result that is a view of an overwritten argument is an
// error, not a miscompile.

// RUN: not qmlir-opt %s --split-input-file --qmlir-drop-mutated-results 2>/dev/null | FileCheck %s
// RUN: not qmlir-opt %s --split-input-file --qmlir-drop-mutated-results 2>&1 >/dev/null | FileCheck %s --check-prefix=ERR

// CHECK-LABEL: func.func @cache_and_counter(
// CHECK-SAME: -> memref<1x8xf32> {
// CHECK-NOT: qmlir.mutated_results
// CHECK-NOT: memref.copy %arg0
// CHECK: memref.copy %[[ALLOC:.+]], %arg1 : memref<i64> to memref<i64>
// CHECK-NEXT: return %{{.+}} : memref<1x8xf32>
func.func @cache_and_counter(%cache: memref<4x8xf32>, %n: memref<i64>, %x: memref<1x8xf32>)
    -> (memref<1x8xf32>, memref<4x8xf32>, memref<i64>) attributes {qmlir.mutated_results = [0, 1]} {
  %i = arith.constant 2 : index
  %sub = memref.subview %cache[%i, 0] [1, 8] [1, 1] : memref<4x8xf32> to memref<1x8xf32, strided<[8, 1], offset: ?>>
  memref.copy %x, %sub : memref<1x8xf32> to memref<1x8xf32, strided<[8, 1], offset: ?>>
  %c1 = arith.constant 1 : i64
  %old = memref.load %n[] : memref<i64>
  %new = arith.addi %old, %c1 : i64
  %alloc = memref.alloc() : memref<i64>
  memref.store %new, %alloc[] : memref<i64>
  %y = memref.alloc() : memref<1x8xf32>
  memref.copy %x, %y : memref<1x8xf32> to memref<1x8xf32>
  return %y, %cache, %alloc : memref<1x8xf32>, memref<4x8xf32>, memref<i64>
}

// -----

// ERR: drop-mutated-results.mlir: error: @aliasing_result: a result is a view of argument 0, which the function also overwrites
func.func @aliasing_result(%cache: memref<4x8xf32>, %x: memref<4x8xf32>)
    -> (memref<1x8xf32, strided<[8, 1]>>, memref<4x8xf32>) attributes {qmlir.mutated_results = [0]} {
  %sub = memref.subview %cache[0, 0] [1, 8] [1, 1] : memref<4x8xf32> to memref<1x8xf32, strided<[8, 1]>>
  %alloc = memref.alloc() : memref<4x8xf32>
  memref.copy %x, %alloc : memref<4x8xf32> to memref<4x8xf32>
  return %sub, %alloc : memref<1x8xf32, strided<[8, 1]>>, memref<4x8xf32>
}
