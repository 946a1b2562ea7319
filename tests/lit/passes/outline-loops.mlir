// qmlir-outline-loops (bufferized IR): each top-level scf.for nest that yields nothing moves into
// its own noinline function (captured values become arguments, constants are cloned in); the
// two identical nests of @f become one function both calls point at. A loop that yields a value
// stays where it is.

// RUN: qmlir-opt %s --qmlir-outline-loops | FileCheck %s

// CHECK-LABEL: func.func @f(%arg0: memref<8xf32>, %arg1: memref<8xf32>, %arg2: f32)
// CHECK-NOT: scf.for
// CHECK: call @[[K:f_kernel0]](%arg0, %arg2) : (memref<8xf32>, f32) -> ()
// CHECK-NEXT: call @[[K]](%arg1, %arg2) : (memref<8xf32>, f32) -> ()
// CHECK-NEXT: return

// CHECK-LABEL: func.func @g(%arg0: memref<4x8xf32>)
// CHECK: call @[[G:g_kernel[0-9]+]](%arg0) : (memref<4x8xf32>) -> ()
// CHECK-NEXT: %{{.+}} = scf.for {{.+}} iter_args({{.+}}) -> (f32)
// CHECK: scf.yield
// CHECK: memref.store
// CHECK-NEXT: return

// CHECK: func.func @[[K]](%arg0: memref<8xf32>, %arg1: f32) attributes {passthrough = ["noinline"]}
// CHECK-DAG: arith.constant 0 : index
// CHECK-DAG: arith.constant 8 : index
// CHECK-DAG: arith.constant 1 : index
// CHECK: scf.for
// CHECK: memref.load %arg0
// CHECK: arith.mulf %{{.+}}, %arg1 : f32
// CHECK: memref.store {{.+}}, %arg0
// CHECK: return

// CHECK: func.func @[[G]](%arg0: memref<4x8xf32>) attributes {passthrough = ["noinline"]}
// CHECK: scf.for
// CHECK-NEXT: scf.for
// CHECK-NEXT: memref.store
// CHECK: return

// Only one copy of @f's kernel is left.
// CHECK-NOT: func.func @f_kernel

func.func @f(%a: memref<8xf32>, %b: memref<8xf32>, %s: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.for %i = %c0 to %c8 step %c1 {
    %v = memref.load %a[%i] : memref<8xf32>
    %w = arith.mulf %v, %s : f32
    memref.store %w, %a[%i] : memref<8xf32>
  }
  scf.for %i = %c0 to %c8 step %c1 {
    %v = memref.load %b[%i] : memref<8xf32>
    %w = arith.mulf %v, %s : f32
    memref.store %w, %b[%i] : memref<8xf32>
  }
  return
}

func.func @g(%a: memref<4x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %z = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c4 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      memref.store %z, %a[%i, %j] : memref<4x8xf32>
    }
  }
  %r = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %z) -> (f32) {
    %v = memref.load %a[%i, %c0] : memref<4x8xf32>
    %n = arith.addf %acc, %v : f32
    scf.yield %n : f32
  }
  memref.store %r, %a[%c0, %c0] : memref<4x8xf32>
  return
}
