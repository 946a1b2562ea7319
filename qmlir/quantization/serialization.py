"""One safetensors file per quantized model: every tensor of the quantized model (integer
weight storage, scales, outlier channel indices and rows, SmoothQuant-folded norms, the float
layers) and, in the metadata, the QuantConfig and each quantized layer's parameters.

Loading needs the float model's architecture (any instance; its weights are replaced): the
quantized layers are rebuilt from the metadata, then every tensor is loaded strictly, so a file
saved from another model is a clear error rather than a silently wrong model.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Union

import torch

from qmlir.quantization.config import QuantConfig
from qmlir.quantization.linear import CastLinear, QuantizedLinear, conv1d_as_linear
from qmlir.quantization.search import AlphaChoice
from qmlir.quantization.quantize import QuantizationError, QuantReport

FORMAT = "qmlir-quantized/1"
_DTYPES = {"torch.bfloat16": torch.bfloat16, "torch.float16": torch.float16}


def _layer_meta(mod: torch.nn.Module) -> dict:
    if isinstance(mod, QuantizedLinear):
        return {"kind": "quantized", "mode": mod.mode, "bits": mod.bits, "group_size": mod.group_size,
                "in_features": mod.in_features, "out_features": mod.out_features, "act_scale": mod.act_scale,
                "act_zero_point": mod.act_zero_point, "act_block": mod.act_block,
                "buffers": sorted(k for k, v in mod._buffers.items() if v is not None)}
    return {"kind": "cast", "dtype": str(mod.dtype), "in_features": mod.in_features,
            "out_features": mod.out_features, "bias": mod.bias is not None}


def save_quantized(qmodel: torch.nn.Module, path: Union[str, Path]) -> Path:
    """Write `qmodel` (a result of qmlir.quantize) to one safetensors file."""
    from safetensors.torch import save_model

    report = getattr(qmodel, "qmlir_quant", None)
    if not isinstance(report, QuantReport):
        raise QuantizationError("save_quantized takes a model returned by qmlir.quantize")
    layers = {n: _layer_meta(m) for n, m in qmodel.named_modules() if isinstance(m, (QuantizedLinear, CastLinear))}
    metadata = {"format": FORMAT, "config": report.config.to_yaml(), "layers": json.dumps(layers),
                "report": json.dumps(report.layers), "skipped": json.dumps(report.skipped),
                "model": type(qmodel).__name__}
    if report.search is not None:
        metadata["search"] = json.dumps(dataclasses.asdict(report.search))
    path = Path(path)
    if not path.parent.is_dir():
        raise QuantizationError(f"cannot save to '{path}': the directory '{path.parent}' does not exist")
    if path.is_dir():
        raise QuantizationError(f"cannot save to '{path}': it is a directory; give a file name")
    # whole or not at all: a temporary file beside the target, renamed once complete
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_model(qmodel, tmp, metadata=metadata)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the permissions open() would give it (mkstemp's are private)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        raise QuantizationError(f"cannot save to '{path}': {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _empty_layer(name: str, meta: dict, shapes: dict) -> torch.nn.Module:
    if meta["kind"] == "cast":
        layer = CastLinear.__new__(CastLinear)
        torch.nn.Module.__init__(layer)
        layer.in_features, layer.out_features = meta["in_features"], meta["out_features"]
        layer.dtype = _DTYPES[meta["dtype"]]
        layer.weight = torch.nn.Parameter(torch.empty(shapes[f"{name}.weight"][0], dtype=layer.dtype), requires_grad=False)
        layer.bias = None if not meta["bias"] else torch.nn.Parameter(
            torch.empty(shapes[f"{name}.bias"][0], dtype=layer.dtype), requires_grad=False)
        return layer

    def buf(key):
        if key not in meta["buffers"]:
            return None
        full = f"{name}.{key}"
        if full not in shapes:
            raise QuantizationError(f"the file has no tensor '{full}'")
        return torch.empty(shapes[full][0], dtype=shapes[full][1])

    return QuantizedLinear(meta["in_features"], meta["out_features"], meta["mode"], meta["bits"], meta["group_size"],
                           buf("weight"), buf("scales"), buf("bias"),
                           meta["act_scale"], meta["act_zero_point"], buf("smooth_inv"),
                           buf("outlier_idx"), buf("outlier_weight"), buf("zero_points"),
                           act_block=meta.get("act_block", 0))


def load_quantized(model: torch.nn.Module, path: Union[str, Path]) -> torch.nn.Module:
    """The quantized model stored in `path`, built on a copy of `model` (same architecture as the
    model that was quantized; `model` itself is untouched)."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise QuantizationError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {k: (tuple(f.get_slice(k).get_shape()), _dtype_of(f.get_slice(k).get_dtype()))
                      for k in f.keys()}
    except Exception as e:  # not a safetensors file
        raise QuantizationError(f"{path}: not a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise QuantizationError(f"{path}: not a qmlir quantized model (format {metadata.get('format')!r})")
    cfg = QuantConfig.from_yaml(metadata["config"])
    layers = json.loads(metadata["layers"])
    qmodel = copy.deepcopy(model).eval()
    conv1d_as_linear(qmodel)  # as quantize did
    modules = dict(qmodel.named_modules())
    if metadata.get("model") != type(qmodel).__name__:
        raise QuantizationError(f"{path} holds a quantized {metadata.get('model')}, not a {type(qmodel).__name__}")
    for name, meta in layers.items():
        mod = modules.get(name)
        if not isinstance(mod, torch.nn.Linear):
            raise QuantizationError(f"{path}: layer '{name}' of the file is "
                                    f"{'missing from' if mod is None else 'not an nn.Linear in'} this model")
        if (mod.in_features, mod.out_features) != (meta["in_features"], meta["out_features"]):
            raise QuantizationError(f"{path}: layer '{name}' is {meta['in_features']}->{meta['out_features']} in "
                                    f"the file but {mod.in_features}->{mod.out_features} in this model")
        try:
            layer = _empty_layer(name, meta, shapes)
        except (KeyError, TypeError, ValueError) as e:  # metadata not as save_quantized writes it
            raise QuantizationError(f"{path}: layer '{name}' has metadata save_quantized does not write "
                                    f"({type(e).__name__}: {e})") from None
        qmodel.set_submodule(name, layer)
    try:
        missing, unexpected = load_model(qmodel, str(path), strict=False)
    except RuntimeError as e:
        raise QuantizationError(f"{path} does not fit this model: {str(e).splitlines()[0]} "
                                f"{' '.join(str(e).split())[:400]}") from None
    tied = {k for k in missing if _is_tied(qmodel, k)}
    if set(missing) - tied or unexpected:
        raise QuantizationError(f"{path} does not fit this model: missing {sorted(set(missing) - tied)[:5]}, "
                                f"unexpected {sorted(unexpected)[:5]}")
    searched = None
    if "search" in metadata:
        try:
            searched = AlphaChoice(**json.loads(metadata["search"]))
        except (ValueError, TypeError):
            raise QuantizationError(f"{path}: its 'search' metadata is not what save_quantized writes") from None
    qmodel.qmlir_quant = QuantReport(cfg, json.loads(metadata.get("report", "{}")),
                                     json.loads(metadata.get("skipped", "[]")), searched)
    return qmodel


def _is_tied(model: torch.nn.Module, key: str) -> bool:
    """A missing key is fine when its tensor shares storage with a loaded one (tied weights)."""
    t = model.state_dict(keep_vars=True).get(key)
    if t is None:
        return False
    ptr = t.data_ptr()
    return sum(1 for v in model.state_dict(keep_vars=True).values() if v.data_ptr() == ptr) > 1


def _dtype_of(name: str) -> torch.dtype:
    return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I8": torch.int8,
            "I64": torch.int64, "I32": torch.int32, "F64": torch.float64, "U8": torch.uint8,
            "BOOL": torch.bool}[name]
