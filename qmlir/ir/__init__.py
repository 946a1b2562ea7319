"""The base layer: what every other layer builds on and nothing here imports from above.

    types          torch dtype <-> MLIR element type
    specs          TensorSpec, a function's argument/result specs, the entry function of a module
    builders       linalg/arith/tensor building blocks (elementwise, reduce, reshape, convert)
    constants      dense constants, and the mark for tensors known at compile time
    walk           finding ops in IR
    matmul_layout  the operand layouts of linalg matmuls (default, NT)
    quant          quant-dialect types from scales, the integer matmul builders
    quant_storage  how quantized weights are stored (int4 packing, ranges, round half to even)
    quant_ops      torch.ops.qmlir.*: the quantized linears and their eager reference semantics
"""
