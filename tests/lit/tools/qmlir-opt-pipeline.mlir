// qmlir passes and upstream passes mix in one pipeline, as flags or as a pipeline string;
// --split-input-file keeps the chunks apart; --list-passes documents every qmlir pass.

// RUN: qmlir-opt %s --split-input-file --qmlir-lower-quant --canonicalize | FileCheck %s
// The input from stdin, named `-` or not named at all, is the same input:
// RUN: cat %s | qmlir-opt - --split-input-file --qmlir-lower-quant --canonicalize | FileCheck %s
// RUN: qmlir-opt --split-input-file --qmlir-lower-quant --canonicalize < %s | FileCheck %s
// RUN: qmlir-opt %s --split-input-file --pass-pipeline='builtin.module(qmlir-lower-quant, func.func(canonicalize))' | FileCheck %s
// RUN: qmlir-opt --list-passes | FileCheck %s --check-prefix=LIST
// RUN: qmlir-opt %s --split-input-file --qmlir-lower-quant --mlir-print-ir-after-all 2>&1 >/dev/null | FileCheck %s --check-prefix=DUMP

// LIST: qmlir-lower-quant
// LIST: qmlir-lower-to-cpu
// DUMP: IR Dump After qmlir-lower-quant

// CHECK-LABEL: func.func @first
// CHECK: math.roundeven
// CHECK: // -----
// CHECK-LABEL: func.func @second
// CHECK-NEXT: return %arg0
func.func @first(%x: tensor<4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5:3>> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:3>>
  return %q : tensor<4x!quant.uniform<i8:f32, 0.5:3>>
}
// -----
func.func @second(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0.0 : f32
  return %x : tensor<4xf32>
}
