"""`QuantizedLinear`: what `qmlir.quantize` puts in place of an `nn.Linear`.

It holds integer weight storage and quantization parameters as buffers and calls one of the
`torch.ops.qmlir` custom ops (qmlir/ir/quant_ops.py). Buffers whose values the compiler must know (scales,
outlier channel indices) are marked as compile-time constants: the TorchDynamo backend hands
their values to the importer, which writes them into `!quant.uniform` types and constants.
"""
from __future__ import annotations

from typing import Optional

import torch

from qmlir.ir import quant_ops  # noqa: F401  (registers torch.ops.qmlir.*)
from qmlir.ir.constants import freeze

class QuantizedLinear(torch.nn.Module):
    """y = op(x * smooth_inv) + bias, with op one of linear_weight_only / linear_w8a8(_dynamic).

    mode: "weight_only" | "w8a8_static" | "w8a8_dynamic" | "w8a8_block" (activation scales per
    `act_block` columns of each row)
    """

    _FROZEN = ("scales", "zero_points", "outlier_idx")

    def __init__(self, in_features: int, out_features: int, mode: str, bits: int, group_size: int,
                 weight: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor] = None,
                 act_scale: float = 0.0, act_zero_point: int = 0, smooth_inv: Optional[torch.Tensor] = None,
                 outlier_idx: Optional[torch.Tensor] = None, outlier_weight: Optional[torch.Tensor] = None,
                 zero_points: Optional[torch.Tensor] = None, act_block: int = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.mode, self.bits, self.group_size = mode, bits, group_size
        self.act_scale, self.act_zero_point = float(act_scale), int(act_zero_point)
        self.act_block = int(act_block)
        if (mode == "w8a8_block") != (self.act_block > 0):
            raise ValueError(f"QuantizedLinear: act_block={act_block} with mode {mode}")
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("zero_points", zero_points)
        self.register_buffer("bias", bias)
        self.register_buffer("smooth_inv", smooth_inv)
        self.register_buffer("outlier_idx", outlier_idx)
        self.register_buffer("outlier_weight", outlier_weight)
        self._mark()

    def _mark(self) -> None:
        for name in self._FROZEN:
            freeze(getattr(self, name))

    def _apply(self, fn, recurse=True):  # .to(), .cpu(), load_state_dict copies keep the marks
        out = super()._apply(fn, recurse)
        self._mark()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._mark()

    @property
    def n_outliers(self) -> int:
        return 0 if self.outlier_idx is None else int(self.outlier_idx.numel())

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}, " \
               f"int{self.bits}, " + (f"group={self.group_size}" if self.group_size else
                                       ("per-tensor" if self.scales.numel() == 1 else "per-channel"))
        if self.zero_points is not None:
            text += ", asymmetric"
        if self.mode == "w8a8_static":
            text += f", act_scale={self.act_scale:.4g}, act_zp={self.act_zero_point}"
        if self.mode == "w8a8_block":
            text += f", act_block={self.act_block}"
        if self.smooth_inv is not None:
            text += ", smooth"
        if self.n_outliers:
            text += f", outliers={self.n_outliers}"
        return text

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(torch.float32)
        if self.smooth_inv is not None:
            x2 = x2 * self.smooth_inv
        if self.mode == "weight_only":
            y = torch.ops.qmlir.linear_weight_only(x2, self.weight, self.scales, self.zero_points, self.bits,
                                                   self.group_size)
        elif self.mode == "w8a8_static":
            y = torch.ops.qmlir.linear_w8a8(x2, self.weight, self.scales, self.act_scale, self.act_zero_point,
                                            self.group_size, self.outlier_idx, self.outlier_weight)
        elif self.mode == "w8a8_block":
            y = torch.ops.qmlir.linear_w8a8_block(x2, self.weight, self.scales, self.bits, self.group_size,
                                                  self.act_block, self.outlier_idx, self.outlier_weight)
        else:
            y = torch.ops.qmlir.linear_w8a8_dynamic(x2, self.weight, self.scales, self.group_size,
                                                    self.outlier_idx, self.outlier_weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


class CastLinear(torch.nn.Module):
    """bf16/f16 weights: y = linear(x in `dtype`, W in `dtype`) returned in x's dtype."""

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features, self.dtype = linear.in_features, linear.out_features, dtype
        self.weight = torch.nn.Parameter(linear.weight.detach().to(dtype), requires_grad=False)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().to(dtype),
                                                                          requires_grad=False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.dtype}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(self.dtype), self.weight, self.bias).to(x.dtype)


def conv1d_as_linear(model: torch.nn.Module) -> int:
    """Replace, in place, every transformers `Conv1D` (GPT-2's y = x @ W + b, W [in, out]) by the
    nn.Linear it is (weight W^T), so that it is quantized, smoothed and compiled like any other
    linear layer. Returns how many were replaced (0 for models without any)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers absent: no model of ours holds one
        return 0
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv1D)]
    for name, conv in found:
        w = conv.weight.detach()
        lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=conv.bias is not None, device=w.device, dtype=w.dtype)
        lin.weight = torch.nn.Parameter(w.t().contiguous(), requires_grad=False)
        if conv.bias is not None:
            lin.bias = torch.nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        if name:
            model.set_submodule(name, lin)
    return len(found)
