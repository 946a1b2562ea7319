// qmlir-protect-arguments marks every argument of every function (with a body) read-only, keeping
// the argument attributes already there; one-shot bufferization then copies into a new buffer
// instead of writing the caller's tensor (destination-passing into %arg0).

// RUN: qmlir-opt %s --qmlir-protect-arguments | FileCheck %s
// RUN: qmlir-opt %s --qmlir-protect-arguments --one-shot-bufferize='bufferize-function-boundaries=1' | FileCheck %s --check-prefix=BUF

// CHECK-LABEL: func.func @two(
// CHECK-SAME: %arg0: tensor<4xf32> {bufferization.writable = false}
// CHECK-SAME: %arg1: tensor<4xf32> {bufferization.writable = false, foo.bar = 1 : i64}
// CHECK-SAME: -> tensor<4xf32>
// CHECK-LABEL: func.func @mutates(
// CHECK-SAME: %arg0: tensor<4xf32> {bufferization.writable = true}
// CHECK-SAME: %arg1: tensor<4xf32> {bufferization.writable = false}
// CHECK-LABEL: func.func @three(
// CHECK-SAME: %arg0: tensor<2xi8> {bufferization.writable = false}
// CHECK-SAME: %arg1: tensor<2xi8> {bufferization.writable = false}
// CHECK-SAME: %arg2: tensor<2xi8> {bufferization.writable = false}
// CHECK-LABEL: func.func @none()
// CHECK-NOT: bufferization.writable

// BUF-LABEL: func.func @two(
// BUF: %[[ALLOC:.+]] = memref.alloc()
// BUF: linalg.add ins(%arg0, %arg1 : {{.+}}) outs(%[[ALLOC]] : memref<4xf32>)
// BUF-NOT: outs(%arg0
// BUF: return %[[ALLOC]]
func.func @two(%x: tensor<4xf32>, %y: tensor<4xf32> {foo.bar = 1 : i64}) -> tensor<4xf32> {
  %r = linalg.add ins(%x, %y : tensor<4xf32>, tensor<4xf32>) outs(%x : tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// An argument the IR declares writable (an input the graph mutates) keeps its declaration.
func.func @mutates(%c: tensor<4xf32> {bufferization.writable = true}, %x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

func.func @three(%a: tensor<2xi8>, %b: tensor<2xi8>, %c: tensor<2xi8>) -> tensor<2xi8> {
  return %a : tensor<2xi8>
}

func.func @none() {
  return
}
