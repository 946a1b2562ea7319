// qmlir-run lowers a tensor-level function for the CPU, runs it and prints its results.
// RUN: %python -c "import numpy as np; np.save('%t.npy', np.array([-70, -1.25, -0.75, 0.25, 1.25, 70], dtype=np.float32))"
// RUN: qmlir-run %s --entry roundtrip --input %t.npy | FileCheck %s
// RUN: qmlir-run %s --entry scale --random-inputs --seed 3 | FileCheck %s --check-prefix=RANDOM
// RUN: not qmlir-run %s --entry nope --random-inputs 2>&1 | FileCheck %s --check-prefix=NOENTRY
// RUN: not qmlir-run %s --entry roundtrip 2>&1 | FileCheck %s --check-prefix=NOINPUT
// RUN: %python -c "import numpy as np; np.save('%t.bad.npy', np.zeros((2, 2), dtype=np.float32))"
// RUN: not qmlir-run %s --entry roundtrip --input %t.bad.npy 2>&1 | FileCheck %s --check-prefix=SHAPE

// round half to even, saturate at -128 / 127 (scale 0.5, zero point 3)
// CHECK: result 0: float32[6]
// CHECK-NEXT: tensor([-65.500000, -1.000000, -1.000000, 0.000000, 1.000000, 62.000000])
func.func @roundtrip(%x: tensor<6xf32>) -> tensor<6xf32> {
  %q = quant.qcast %x : tensor<6xf32> to tensor<6x!quant.uniform<i8:f32, 0.5:3>>
  %y = quant.dcast %q : tensor<6x!quant.uniform<i8:f32, 0.5:3>> to tensor<6xf32>
  return %y : tensor<6xf32>
}

// RANDOM: result 0: float32[2, 2]
func.func @scale(%x: tensor<2x2xf32>) -> tensor<2x2xf32> {
  %e = tensor.empty() : tensor<2x2xf32>
  %r = linalg.add ins(%x, %x : tensor<2x2xf32>, tensor<2x2xf32>) outs(%e : tensor<2x2xf32>) -> tensor<2x2xf32>
  return %r : tensor<2x2xf32>
}

// NOENTRY: qmlir-run: error: no function 'nope' in the module (functions: roundtrip, scale)
// NOINPUT: qmlir-run: error: the function takes 1 argument(s), got 0 --input file(s)
// SHAPE: qmlir-run: error: input 0 ('{{.*}}.bad.npy'): expected shape [6], got [2, 2]
