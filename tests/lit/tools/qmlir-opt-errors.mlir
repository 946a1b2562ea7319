// Bad input gets one MLIR-style diagnostic and exit status 1, never a traceback.

// RUN: not qmlir-opt %s --no-such-pass 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: qmlir-opt: error: unknown pass or bad options 'no-such-pass'
// UNKNOWN-NOT: Traceback

// RUN: not qmlir-opt %s --qmlir-lower-quant='bogus=1' 2>&1 | FileCheck %s --check-prefix=OPTION
// OPTION: qmlir-opt: error: qmlir-lower-quant: unknown option 'bogus'

// RUN: not qmlir-opt %s --canonicalize='nonsense=1' 2>&1 | FileCheck %s --check-prefix=UPOPT
// UPOPT: qmlir-opt: error: unknown pass or bad options 'canonicalize{nonsense=1}'

// RUN: not qmlir-opt %s.missing 2>&1 | FileCheck %s --check-prefix=MISSING
// MISSING: qmlir-opt: error: cannot read '{{.*}}.missing'

// RUN: not qmlir-opt %s --split-input-file 2>&1 | FileCheck %s --check-prefix=PARSE
// PARSE: qmlir-opt-errors.mlir:[[@LINE+3]]:8: error: custom op 'arith.bogus' is unknown
// -----
func.func @f() {
  %0 = arith.bogus
}

// RUN: not qmlir-opt %s --pass-pipeline='builtin.module(cse' 2>&1 | FileCheck %s --check-prefix=PIPE
// PIPE: qmlir-opt: error: unbalanced brackets in pass pipeline
