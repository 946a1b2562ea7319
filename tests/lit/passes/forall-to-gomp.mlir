// qmlir-forall-to-gomp (bufferized IR): a static scf.forall becomes a task function run by
// libgomp's team. The call site stores the captured values (memref descriptors, an index as
// i64, an f32) in one stack struct and calls GOMP_parallel with min(trips, threads) threads;
// the task loads them back and runs its block of the flattened trips (thread t of n:
// [t * 64 / n, (t + 1) * 64 / n)), the indices delinearized in row-major order. Constants are
// cloned in. A forall with a single trip calls its task directly; one with a dynamic bound is
// left for the async runtime.

// RUN: qmlir-opt %s --qmlir-forall-to-gomp='threads=2' | FileCheck %s

// CHECK-DAG: llvm.func @GOMP_parallel(!llvm.ptr, !llvm.ptr, i32, i32)
// CHECK-DAG: llvm.func @omp_get_thread_num() -> i32
// CHECK-DAG: llvm.func @omp_get_num_threads() -> i32

// CHECK-LABEL: func.func @f(%arg0: memref<64xf32>, %arg1: memref<64xf32>, %arg2: f32, %arg3: index)
// CHECK: %[[BUF:.+]] = llvm.alloca %{{.+}} x !llvm.struct<(struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>, f32, i64, struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>)>
// CHECK-NOT: scf.forall
// CHECK: %[[D0:.+]] = builtin.unrealized_conversion_cast %arg0 : memref<64xf32> to !llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>
// CHECK: llvm.store %[[D0]]
// CHECK: llvm.store %arg2
// CHECK: %[[N:.+]] = arith.index_cast %arg3 : index to i64
// CHECK: llvm.store %[[N]]
// CHECK: %[[F:.+]] = constant @f_forall0 : (!llvm.ptr) -> ()
// CHECK: %[[FP:.+]] = builtin.unrealized_conversion_cast %[[F]] : (!llvm.ptr) -> () to !llvm.ptr
// CHECK: %[[TWO:.+]] = llvm.mlir.constant(2 : i32) : i32
// CHECK: llvm.call @GOMP_parallel(%[[FP]], %[[BUF]], %[[TWO]], %{{.+}}) : (!llvm.ptr, !llvm.ptr, i32, i32) -> ()
// CHECK-NEXT: return

// CHECK-LABEL: func.func @one(%arg0: memref<8xf32>)
// CHECK-NOT: GOMP_parallel
// CHECK: call @one_forall1(%{{.+}}) : (!llvm.ptr) -> ()

// CHECK-LABEL: func.func @dynamic(%arg0: memref<8xf32>, %arg1: index)
// CHECK: scf.forall (%{{.+}}) in (%arg1)

// CHECK-LABEL: func.func private @f_forall0(%arg0: !llvm.ptr)
// CHECK: %[[A:.+]] = builtin.unrealized_conversion_cast %{{.+}} : !llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)> to memref<64xf32>
// CHECK: %[[S:.+]] = llvm.load %{{.+}} : !llvm.ptr -> f32
// CHECK: %[[HALF:.+]] = arith.constant 2.500000e+00 : f32
// CHECK: %[[T:.+]] = llvm.call @omp_get_thread_num() : () -> i32
// CHECK: %[[NT:.+]] = llvm.call @omp_get_num_threads() : () -> i32
// CHECK: scf.for %[[L:.+]] = %{{.+}} to %{{.+}} step %{{.+}} {
// CHECK: arith.divui %[[L]], %c16
// CHECK: arith.remui %{{.+}}, %c4
// CHECK: arith.remui %{{.+}}, %c16
// CHECK: memref.load %[[A]]
// CHECK: arith.mulf %{{.+}}, %[[S]] : f32
// CHECK: arith.mulf %{{.+}}, %[[HALF]] : f32
// CHECK: memref.store

func.func @f(%a: memref<64xf32>, %b: memref<64xf32>, %s: f32, %n: index) {
  %half = arith.constant 2.5 : f32
  scf.forall (%i, %j) in (4, 16) {
    %k = affine.apply affine_map<(d0, d1) -> (d0 * 16 + d1)>(%i, %j)
    %x = memref.load %a[%k] : memref<64xf32>
    %y = arith.mulf %x, %s : f32
    %ni = arith.index_cast %n : index to i64
    %nf = arith.sitofp %ni : i64 to f32
    %z = arith.addf %y, %nf : f32
    %w = arith.mulf %z, %half : f32
    memref.store %w, %b[%k] : memref<64xf32>
  }
  return
}

func.func @one(%a: memref<8xf32>) {
  scf.forall (%i) in (1) {
    %c0 = arith.constant 0 : index
    %x = memref.load %a[%c0] : memref<8xf32>
    memref.store %x, %a[%i] : memref<8xf32>
  }
  return
}

func.func @dynamic(%a: memref<8xf32>, %n: index) {
  scf.forall (%i) in (%n) {
    %c0 = arith.constant 0 : index
    %x = memref.load %a[%c0] : memref<8xf32>
    memref.store %x, %a[%i] : memref<8xf32>
  }
  return
}
