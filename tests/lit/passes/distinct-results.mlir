// qmlir-distinct-results: every tensor result gets its own tensor before bufferization. A result
// that is a function argument, or repeats an earlier result, is returned through a linalg.copy
// into a fresh tensor.empty; distinct results and non-tensor results are left alone.

// RUN: qmlir-opt %s --qmlir-distinct-results | FileCheck %s

// CHECK-LABEL: func.func @argument
// CHECK: %[[SUM:.+]] = arith.addf %arg0, %arg1 : tensor<4xf32>
// CHECK: %[[E:.+]] = tensor.empty() : tensor<4xf32>
// CHECK: %[[C:.+]] = linalg.copy {{.*}}ins(%arg0 : tensor<4xf32>) outs(%[[E]] : tensor<4xf32>) -> tensor<4xf32>
// CHECK: return %[[C]], %[[SUM]] : tensor<4xf32>, tensor<4xf32>
func.func @argument(%x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %r = arith.addf %x, %y : tensor<4xf32>
  return %x, %r : tensor<4xf32>, tensor<4xf32>
}

// The first occurrence stays; the repeat is copied; the i32 result is not a tensor.
// CHECK-LABEL: func.func @repeat
// CHECK: %[[M:.+]] = arith.mulf %arg0, %arg0 : tensor<2x3xf32>
// CHECK: %[[E:.+]] = tensor.empty() : tensor<2x3xf32>
// CHECK: %[[C:.+]] = linalg.copy {{.*}}ins(%[[M]] : tensor<2x3xf32>) outs(%[[E]] : tensor<2x3xf32>)
// CHECK: return %[[M]], %[[C]], %{{.+}} : tensor<2x3xf32>, tensor<2x3xf32>, i32
func.func @repeat(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, i32) {
  %r = arith.mulf %x, %x : tensor<2x3xf32>
  %c = arith.constant 1 : i32
  return %r, %r, %c : tensor<2x3xf32>, tensor<2x3xf32>, i32
}

// One argument returned twice: two copies, into two tensors.
// CHECK-LABEL: func.func @argument_twice
// CHECK: %[[E1:.+]] = tensor.empty() : tensor<4xf32>
// CHECK: %[[C1:.+]] = linalg.copy {{.*}}ins(%arg0 : tensor<4xf32>) outs(%[[E1]] : tensor<4xf32>)
// CHECK: %[[E2:.+]] = tensor.empty() : tensor<4xf32>
// CHECK: %[[C2:.+]] = linalg.copy {{.*}}ins(%arg0 : tensor<4xf32>) outs(%[[E2]] : tensor<4xf32>)
// CHECK: return %[[C1]], %[[C2]] : tensor<4xf32>, tensor<4xf32>
func.func @argument_twice(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  return %x, %x : tensor<4xf32>, tensor<4xf32>
}

// Distinct results: nothing to copy.
// CHECK-LABEL: func.func @distinct
// CHECK-NOT: linalg.copy
// CHECK: %[[A:.+]] = arith.addf
// CHECK: %[[B:.+]] = arith.mulf
// CHECK-NOT: linalg.copy
// CHECK: return %[[A]], %[[B]]
func.func @distinct(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %a = arith.addf %x, %x : tensor<4xf32>
  %b = arith.mulf %x, %x : tensor<4xf32>
  return %a, %b : tensor<4xf32>, tensor<4xf32>
}
