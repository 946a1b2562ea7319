func.func @main(%x: tensor<4xf32>) -> f32 {
  %i = arith.constant 9 : index
  %v = tensor.extract %x[%i] : tensor<4xf32>
  return %v : f32
}
