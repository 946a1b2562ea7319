"""ATen-level quantization: configs, calibration, SmoothQuant, outlier channels, quantized
linear layers as torch custom ops (lowered to the quant dialect), one-file save/load."""
from qmlir.quantization.calibration import CalibrationError
from qmlir.quantization.config import PRESETS, QuantConfig, QuantConfigError
from qmlir.quantization.linear import CastLinear, QuantizedLinear
from qmlir.quantization.quantize import QuantizationError, QuantReport, quantize
from qmlir.quantization.serialization import load_quantized, save_quantized

__all__ = ["CalibrationError", "CastLinear", "PRESETS", "QuantConfig", "QuantConfigError", "QuantReport",
           "QuantizationError", "QuantizedLinear", "load_quantized", "quantize", "save_quantized"]
