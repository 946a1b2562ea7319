// RUN: not qmlir-opt %s --qmlir-lower-to-cuda='format=cubin' 2>&1 | FileCheck %s --check-prefix=FORMAT
// RUN: not qmlir-opt %s --qmlir-lower-to-cuda 2>&1 | FileCheck %s --check-prefix=DYNAMIC

// FORMAT: error: qmlir-lower-to-cuda: option 'format' must be one of isa, bin, fatbin, got 'cubin'
// DYNAMIC: error: gpu device buffers: an allocation of dynamic shape memref<?xf32>; only static shapes are supported
func.func @dyn(%x: tensor<?xf32>) -> tensor<?xf32> {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?xf32>
  %e = tensor.empty(%n) : tensor<?xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%x : tensor<?xf32>) outs(%e : tensor<?xf32>) {
  ^bb0(%i: f32, %o: f32):
    %r = arith.negf %i : f32
    linalg.yield %r : f32
  } -> tensor<?xf32>
  return %y : tensor<?xf32>
}
