// Inputs on which LLVM 22 asserts (aborts) are rejected with a diagnostic first; anything MLIR
// still cannot report becomes one error line from the tools' crash guard, never a signal.

// A file that ends inside an op's attribute (the MLIR parser aborts on it):
// RUN: not qmlir-opt %S/Inputs/truncated-attribute.mlir 2>&1 | FileCheck %s --check-prefix=TRUNC
// RUN: not qmlir-run %S/Inputs/truncated-attribute.mlir --random-inputs 2>&1 | FileCheck %s --check-prefix=TRUNC
// TRUNC: truncated-attribute.mlir:1:54: error: unexpected end of input: '{' is never closed
// TRUNC-NOT: Traceback

// A permutation that is not a list of integers (found by make fuzz; the parser aborts on it):
// RUN: not qmlir-opt %S/Inputs/bad-permutation.mlir 2>&1 | FileCheck %s --check-prefix=PERM
// RUN: not qmlir-run %S/Inputs/bad-permutation.mlir --random-inputs 2>&1 | FileCheck %s --check-prefix=PERM
// PERM: bad-permutation.mlir:3:78: error: expected a list of integers after 'permutation =', like [1, 0]

// A linalg op's attributes followed by '<' that opens no property dictionary (found by make fuzz):
// RUN: not qmlir-opt %S/Inputs/linalg-bad-properties.mlir 2>&1 | FileCheck %s --check-prefix=PROPS
// PROPS: linalg-bad-properties.mlir:3:3: error: expected 'ins' or 'outs' after the attributes of linalg.generic, got '<'

// Quant storage narrower than 8 bits (other than i4): the memref lowering would assert.
// RUN: not qmlir-opt %s --split-input-file --qmlir-lower-to-cpu='features= threads=1' 2>&1 | FileCheck %s --check-prefix=QUANT
// QUANT: robustness.mlir:[[# @LINE + 4]]:8: error: storage type i2 of !quant.uniform<i2:f32, 5.000000e-01>: qmlir lowers i4, i8, i16, i32 storage
// A zero point outside the storage range would make every output wrong.
// QUANT: robustness.mlir:[[# @LINE + 8]]:8: error: zero point 300 of !quant.uniform<i8:f32, 5.000000e-01:300> is outside its storage range [-128, 127]
func.func @narrow(%x: tensor<4xf32>) -> tensor<4xf32> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i2:f32, 0.5>>
  %d = quant.dcast %q : tensor<4x!quant.uniform<i2:f32, 0.5>> to tensor<4xf32>
  return %d : tensor<4xf32>
}
// -----
func.func @zero_point(%x: tensor<4xf32>) -> tensor<4xf32> {
  %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:300>>
  %d = quant.dcast %q : tensor<4x!quant.uniform<i8:f32, 0.5:300>> to tensor<4xf32>
  return %d : tensor<4xf32>
}

// Option values LLVM would abort on:
// RUN: not qmlir-opt %s --split-input-file --qmlir-lower-to-cuda='opt-level=99' 2>&1 | FileCheck %s --check-prefix=OPTLEVEL
// OPTLEVEL: qmlir-opt: error: qmlir-lower-to-cuda: option 'opt-level' must be >= 0 and <= 3, got '99'

// A pass option whose value is a pipeline (inline's default-pipeline) is checked before the run:
// MLIR parses it only when the pass runs, printed its error there, and exited 0.
// RUN: not qmlir-opt %s --split-input-file --inline='default-pipeline=bogus' 2>&1 | FileCheck %s --check-prefix=NESTED
// RUN: qmlir-opt %s --split-input-file --inline='default-pipeline=canonicalize' -o /dev/null
// NESTED: qmlir-opt: error: bad pipeline in option default-pipeline=bogus of 'inline{default-pipeline=bogus}'

// Constant indices out of a static dimension, and tensors larger than the machine's memory, are
// errors before anything is compiled (they crashed the compiled code, or its allocation).
// RUN: not qmlir-run %S/Inputs/extract-out-of-range.mlir --random-inputs 2>&1 | FileCheck %s --check-prefix=EXTRACT
// EXTRACT: qmlir-run: error: loc({{.*}}:3:8): tensor.extract at index 9 of dimension 0 with size 4 (type tensor<4xf32>): out of bounds
// EXTRACT-NOT: Traceback
// RUN: not qmlir-run %S/Inputs/huge-constant.mlir --random-inputs 2>&1 | FileCheck %s --check-prefix=HUGE
// HUGE: arith.constant makes a tensor<4000000000000xf32> of 14901.2 GiB, more than this machine's
// HUGE-NOT: Traceback

// An option that has no effect with the others given is an error, not ignored.
// RUN: not qmlir-opt %s --split-input-file --qmlir-quantize-matmul='granularity=channel group-size=64' 2>&1 | FileCheck %s --check-prefix=GROUP
// GROUP: qmlir-opt: error: qmlir-quantize-matmul: option 'group-size=64' has no effect unless granularity=group (got granularity=channel)
