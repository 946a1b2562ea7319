"""`qmlir.quantize(model, calib_data, config)`: a quantized copy of a model.

Steps: pick the nn.Linear layers (minus `skip`), calibrate if the config needs it (static
activations, SmoothQuant, outliers), apply SmoothQuant and calibrate again on the smoothed
model (the ranges that matter are those of the smoothed activations), then replace each layer
with a QuantizedLinear (integer modes) or CastLinear (bf16/f16). The input model is untouched.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Union

import torch

from qmlir.errors import QmlirError
from qmlir.quantization import search, sequential, simulate, smoothquant
from qmlir.quantization.calibration import ActivationObserver, calibrate, validate_calibration
from qmlir.quantization.gptq import gptq_quantize
from qmlir.quantization.layer_stats import ratio_db
from qmlir.quantization.config import PRESETS, QuantConfig, QuantConfigError
from qmlir.quantization.linear import CastLinear, QuantizedLinear, conv1d_as_linear
from qmlir.ir.quant_storage import (dequantize_weight, integer_weight, pack_panels, pack_panels_int4,
                                    quantize_weight, unpack_panels)

_OUTLIER_DTYPES = simulate.OUTLIER_DTYPES


class QuantizationError(QmlirError, ValueError):
    """A model or its data cannot be quantized as asked."""


@dataclass
class QuantReport:
    """What quantize() did, for printing and for save_quantized's metadata."""

    config: QuantConfig
    layers: Dict[str, dict] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    search: Optional[search.AlphaChoice] = None  # what an "auto" search chose, and its scores

    def summary(self) -> str:
        n_out = sum(v.get("outliers", 0) for v in self.layers.values())
        text = f"{len(self.layers)} linear layers -> {self.config.describe()}; {len(self.skipped)} skipped"
        if self.config.outlier_threshold is not None:
            text += f"; {n_out} outlier input channels kept in {self.config.outlier_dtype}"
        if self.config.smoothquant_alpha is not None or self.config.awq_alpha is not None:
            folded = sum(1 for v in self.layers.values() if v.get("smooth") == "folded")
            text += f"; scales folded into norms/producers for {folded} layers, explicit for " \
                    f"{sum(1 for v in self.layers.values() if v.get('smooth') == 'explicit')}"
        own = sum(1 for v in self.layers.values() if "scheme" in v)
        if own:
            text += f"; {own} layers with their own scheme ({', '.join(self.config.layers)})"
        if self.search is not None:
            text += f"; {self.search.describe()}"
        return text


def resolve_config(config: Union[QuantConfig, str, dict, None]) -> QuantConfig:
    if config is None:
        return QuantConfig()
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, dict):
        return QuantConfig.from_dict(config)
    if isinstance(config, str):
        if config in PRESETS:
            return copy.deepcopy(PRESETS[config])
        if config.endswith((".yaml", ".yml")):
            return QuantConfig.from_yaml(config)
        raise QuantConfigError(f"unknown preset '{config}' (presets: {', '.join(PRESETS)}; or a .yaml path)")
    raise QuantConfigError(f"config must be a QuantConfig, a preset name, a dict or a YAML path, got "
                           f"{type(config).__name__}")


def select_layers(model: torch.nn.Module, cfg: QuantConfig) -> tuple:
    chosen, skipped = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            (skipped if any(fnmatch.fnmatchcase(name, p) for p in cfg.skip) else chosen).append(name)
    return chosen, skipped


def activation_params(obs: ActivationObserver, cfg: QuantConfig, outliers: Optional[torch.Tensor]) -> tuple:
    """(scale, zero point) of a static per-tensor int8 activation, from the regular channels."""
    return simulate.activation_params(obs.channel_min, obs.channel_max, cfg,
                                      lambda q: obs.percentile(q, exclude=outliers), outliers)


SEARCH_FOLDS = 4


def search_folds(calib: list) -> int:
    """How many folds the auto searches split the calibration batches into (batch i in fold
    i % folds): up to 4, each scored with scales fitted on the others."""
    if len(calib) < 2:
        raise QuantizationError("an \"auto\" search scores candidate scales on calibration batches it did not "
                                f"fit them on: give at least 2 calibration batches (got {len(calib)})")
    return min(SEARCH_FOLDS, len(calib))


def _quantized_layer(lin: torch.nn.Linear, cfg: QuantConfig, obs: Optional[ActivationObserver],
                     smooth_inv: Optional[torch.Tensor], info: dict) -> QuantizedLinear:
    w = lin.weight.detach().to(torch.float32)
    N, K = w.shape
    idx, w_out = None, None
    if cfg.outlier_threshold is not None:
        idx = torch.nonzero(obs.channel_absmax > cfg.outlier_threshold).reshape(-1).to(torch.int64)
        info["outliers"] = int(idx.numel())
        if idx.numel():
            w_out = w[:, idx].t().contiguous().to(_OUTLIER_DTYPES[cfg.outlier_dtype])
            w = w.clone()
            w[:, idx] = 0.0
    if cfg.weight_algorithm == "gptq":
        qw = gptq_quantize(w, obs.xtx, cfg.weight_bits, cfg.weight_granularity, cfg.group_size, cfg.weight_symmetric,
                           damp=cfg.gptq_damp, act_order=cfg.gptq_act_order)
    else:
        qw = quantize_weight(w, cfg.weight_bits, cfg.weight_granularity, cfg.group_size, cfg.weight_symmetric)
    bias = None if lin.bias is None else lin.bias.detach().to(torch.float32).clone()
    group = qw.group_size
    if cfg.act_dtype == "none":
        return QuantizedLinear(K, N, "weight_only", cfg.weight_bits, group, qw.storage, qw.scales, bias,
                               smooth_inv=smooth_inv, zero_points=qw.zero_points)
    if cfg.static_activations:
        scale, zp = activation_params(obs, cfg, idx)
        info.update(act_scale=scale, act_zero_point=zp)
        return QuantizedLinear(K, N, "w8a8_static", 8, group, qw.storage, qw.scales, bias, scale, zp,
                               smooth_inv, idx, w_out)
    if cfg.act_granularity == "block":
        values, block = integer_weight(qw.storage, cfg.weight_bits), cfg.act_block
        if values.shape[0] % block:  # per-channel weights: K padded with zero rows to whole blocks
            values = torch.cat([values, values.new_zeros(block - values.shape[0] % block, N)])
        # packed once, here: the panel layout the kernel streams (saved as it is)
        packed = pack_panels_int4(values) if cfg.weight_bits == 4 else pack_panels(values)
        return QuantizedLinear(K, N, "w8a8_block", cfg.weight_bits, group, packed, qw.scales, bias, 0.0, 0,
                               smooth_inv, idx, w_out, act_block=block)
    return QuantizedLinear(K, N, "w8a8_dynamic", 8, group, qw.storage, qw.scales, bias, 0.0, 0,
                           smooth_inv, idx, w_out)


def layer_configs(cfg: QuantConfig, names: List[str], skipped: List[str]) -> Dict[str, QuantConfig]:
    """Each quantized layer's scheme (QuantConfig.for_layer); a `layers` pattern that matches no
    quantized layer is an error (a typo would otherwise quantize the layer as everything else)."""
    out = {n: cfg.for_layer(n) for n in names}
    if getattr(cfg, "_lenient_layers", False):  # a preset's patterns apply where their layers exist
        return out
    for pattern in cfg.layers:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            why = " (only skipped layers: set skip to quantize them)" if any(
                fnmatch.fnmatchcase(n, pattern) for n in skipped) else ""
            raise QuantizationError(f"layers pattern '{pattern}' matches no linear layer to quantize{why}")
    return out


def _cast_layer(lin: torch.nn.Linear, cfg: QuantConfig) -> CastLinear:
    return CastLinear(lin, torch.bfloat16 if cfg.weight_dtype == "bf16" else torch.float16)


def _layer(lin: torch.nn.Linear, cfg: QuantConfig, obs: Optional[ActivationObserver],
           smooth_inv: Optional[torch.Tensor], info: dict) -> torch.nn.Module:
    """The layer `cfg` makes of `lin`: quantized, or cast for bf16/f16 weights."""
    if not cfg.is_integer:
        if smooth_inv is not None:
            raise QuantizationError("a bf16/f16 layer cannot take an explicit smoothing scale")
        return _cast_layer(lin, cfg)
    return _quantized_layer(lin, cfg, obs, smooth_inv, info)


def _with_ranges(hessian_obs: ActivationObserver, range_obs: Optional[ActivationObserver]) -> ActivationObserver:
    """The observer of sequential GPTQ (x^T x from the quantized prefix) with the activation
    ranges of the float model's calibration, when there is one (W8A8, outlier channels)."""
    if range_obs is None:
        return hessian_obs
    range_obs.xtx = hessian_obs.xtx
    return range_obs


def dequantized_weight(layer: torch.nn.Module) -> torch.Tensor:
    """A quantized (or cast) layer's weight [N, K] in f32 (outlier rows added back)."""
    if isinstance(layer, CastLinear):
        return layer.weight.detach().to(torch.float32)
    if layer.mode == "w8a8_block":  # the panel layout: the integer values, int4 ones too
        storage, bits = unpack_panels(layer.weight, layer.out_features, layer.bits), 8
    else:
        storage, bits = layer.weight, layer.bits
    w = dequantize_weight(storage, layer.scales, bits, layer.group_size,
                          layer.zero_points)[:layer.in_features].t().contiguous()
    if layer.outlier_idx is not None and layer.outlier_idx.numel():
        w[:, layer.outlier_idx] = layer.outlier_weight.t().to(torch.float32)
    return w


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal to quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - approx)^2), in
    f64; inf when they are equal."""
    ref = reference.detach().to(torch.float64)
    noise = float((ref - approx.detach().to(torch.float64)).pow(2).sum())
    return ratio_db(float(ref.pow(2).sum()), noise)


def _replace(root: torch.nn.Module, name: str, new: torch.nn.Module) -> torch.nn.Module:
    """`root` with its submodule `name` replaced by `new`; `new` itself when `name` is "" (the
    model is a bare nn.Linear)."""
    if name == "":
        return new
    root.set_submodule(name, new)
    return root


def quantize(model: torch.nn.Module, calib_data: Optional[Iterable] = None,
             config: Union[QuantConfig, str, dict, None] = None, progress: bool = True) -> torch.nn.Module:
    """A quantized copy of `model` (which is left untouched).

    calib_data: an iterable of model inputs (tensors, tuples of args, or dicts of kwargs); needed
        for static activations, SmoothQuant and outlier channels, ignored otherwise.
    config: a QuantConfig, a preset name (qmlir.quantization.PRESETS), a dict, or a YAML path.
    The result's linear layers call torch.ops.qmlir.* (eager: exact integer reference semantics;
    torch.compile(backend="qmlir") / qmlir.compile: quant-dialect IR). `result.qmlir_quant` holds
    a QuantReport (config and per-layer parameters).
    """
    return _quantize(model, calib_data, resolve_config(config), progress)


def _quantize(model: torch.nn.Module, calib_data: Optional[Iterable], cfg: QuantConfig, progress: bool,
              model_search: bool = True, group_search: bool = True,
              group_alphas: Optional[Dict[str, Optional[float]]] = None,
              calib_cache: Optional[dict] = None) -> torch.nn.Module:
    """quantize(); model_search: run the model-level half of an "auto" search (search.py);
    group_search: its per-group half (False: `group_alphas`, the alphas chosen already);
    calib_cache: the first calibration's observers, shared by the search's candidates (they
    quantize the same model on the same batches, and differ only after it)."""
    if not isinstance(model, torch.nn.Module):
        raise QuantizationError(f"qmlir.quantize takes a torch.nn.Module, got {type(model).__name__}")
    if calib_data is not None:
        # checked before anything runs, weight-only modes too (their data is otherwise unused);
        # where calibration runs, its observers name the layer a NaN/Inf reaches instead
        calib_data = validate_calibration(calib_data, finite=not cfg.needs_calibration)
    qmodel = copy.deepcopy(model).eval()
    conv1d_as_linear(qmodel)  # GPT-2's Conv1D layers are linears
    names, skipped = select_layers(qmodel, cfg)
    if not names:
        raise QuantizationError("no nn.Linear layer to quantize" + (f" (skip={cfg.skip} matched all "
                                                                      f"{len(skipped)})" if skipped else ""))
    for name in names:
        p = dict(qmodel.named_modules())[name].weight
        if not p.dtype.is_floating_point:
            raise QuantizationError(f"layer '{name}' has {p.dtype} weights; quantize a float model")
    report = QuantReport(cfg, {n: {} for n in names}, skipped)
    lc = layer_configs(cfg, names, skipped)
    for n, c in lc.items():
        if c is not cfg:
            report.layers[n]["scheme"] = c.describe()
    modules = dict(qmodel.named_modules())
    linears = {n: modules[n] for n in names}
    if not any(c.is_integer for c in lc.values()):
        for n in names:
            qmodel = _replace(qmodel, n, _cast_layer(linears[n], lc[n]))
        qmodel.qmlir_quant = report
        return qmodel
    observers: Dict[str, ActivationObserver] = {}
    smooth_inv: Dict[str, torch.Tensor] = {}
    done: Dict[str, torch.nn.Module] = {}  # layers quantized already (sequential GPTQ)
    if any(c.needs_calibration for c in lc.values()):
        if calib_data is None:
            needing = next(c for c in lc.values() if c.needs_calibration)
            raise QuantizationError(f"{needing.describe()} needs calibration data (calib_data=None)")
        calib = list(calib_data)
        alpha = cfg.smoothquant_alpha if cfg.smoothquant_alpha is not None else cfg.awq_alpha
        if alpha == "auto" and model_search:
            search_folds(calib)  # enough batches, checked before the search runs
            cache: dict = {}
            choice = search.choose_alpha(model, calib, cfg, lambda m, c, conf, per_group: _quantize(
                m, c, conf, False, model_search=False, group_search=per_group, calib_cache=cache), progress)
            groups = {"groups": cache["groups"]} if "groups" in cache else None  # traced once
            cache.clear()
            report.search = choice
            if choice.per_group is None:  # one alpha (or none) for every group
                key = "smoothquant_alpha" if cfg.smoothquant_alpha is not None else "awq_alpha"
                q = _quantize(model, calib, dataclasses.replace(cfg, **{key: choice.alpha}), progress,
                              model_search=False, calib_cache=groups)
                q.qmlir_quant = dataclasses.replace(q.qmlir_quant, config=cfg, search=choice)
                return q
            group_alphas, group_search = choice.per_group, False
            calib_cache = groups if calib_cache is None else calib_cache
        folds = search_folds(calib) if alpha == "auto" and group_search else 0
        gptq = any(c.weight_algorithm == "gptq" for c in lc.values())
        blocks = sequential.find_blocks(qmodel, names) if gptq and cfg.gptq_sequential else None
        in_blocks = [n for n in names if blocks is not None and n.startswith(blocks[0] + ".")]
        float_hessians = gptq and not in_blocks  # else only for the linears outside the blocks
        ranges = any(c.act_dtype != "none" or c.outlier_threshold is not None for c in lc.values())
        if alpha is not None or not gptq or not in_blocks or ranges:
            hessian = float_hessians and alpha is None
            key = (folds, hessian)
            if calib_cache is not None and key in calib_cache:
                observers = calib_cache[key]
            else:
                observers = calibrate(qmodel, calib, linears, progress, hessian=hessian,
                                      sink_weight=cfg.gptq_sink_weight, folds=folds)
                if calib_cache is not None and not hessian:
                    calib_cache[key] = observers
        if alpha is not None:
            groups = None if calib_cache is None else calib_cache.get("groups")
            if groups is None:  # the dataflow is the same for every candidate of a search
                groups = [(g.linears, g.fold, g.why) for g in smoothquant.find_groups(qmodel, names, calib[0])]
                if calib_cache is not None:
                    calib_cache["groups"] = groups
            for group in (smoothquant.SmoothGroup(lin, fold, why=why) for lin, fold, why in groups):
                smoothquant.choose_scales(group, modules, observers, cfg,
                                          None if group_alphas is None else group_alphas.get(group.linears[0]))
                inv = smoothquant.apply(group, modules)
                for n in group.linears:
                    if n in report.layers:
                        report.layers[n].update(smooth="none" if group.scales is None else
                                                "folded" if inv is None else "explicit",
                                                alpha=None if group.alpha is None else round(group.alpha, 4))
                        if group.scales is not None:  # where the 1/s went (or why not), and its spread
                            report.layers[n].update({"smooth_into": group.fold.module} if inv is None else
                                                    {"smooth_why": group.why})
                            sc = group.scales.to(torch.float32)
                            report.layers[n].update(scale_min=float(sc.min()), scale_median=float(sc.median()),
                                                    scale_max=float(sc.max()))
                    if inv is not None:
                        smooth_inv[n] = inv
                        qmodel = _replace(qmodel, n, smoothquant.SmoothedLinear(linears[n], inv))
            observers = calibrate(qmodel, calib, linears, progress, hessian=float_hessians,  # smoothed activations
                                  sink_weight=cfg.gptq_sink_weight)
        if in_blocks:
            outside = {n: linears[n] for n in names if n not in in_blocks}
            if outside:
                observers.update(calibrate(qmodel, calib, outside, progress, hessian=True,
                                           sink_weight=cfg.gptq_sink_weight))
            layers = sequential.quantize_blocks(
                qmodel, calib, {n: linears[n] for n in in_blocks},
                lambda n, obs: _layer(linears[n], lc[n], _with_ranges(obs, observers.get(n)),
                                      smooth_inv.get(n), report.layers[n]),
                dequantized_weight, cfg.gptq_sink_weight, progress)
            if layers is None:  # the blocks could not be run on their own: Hessians from the float model
                observers.update(calibrate(qmodel, calib, {n: linears[n] for n in in_blocks}, progress,
                                           hessian=True, sink_weight=cfg.gptq_sink_weight))
            else:
                done.update(layers)
    from tqdm.auto import tqdm
    for n in tqdm(names, desc="qmlir quantize", unit="layer", disable=not progress):
        layer = done.get(n) or _layer(linears[n], lc[n], observers.get(n), smooth_inv.get(n), report.layers[n])
        # against the (smoothed) float weight the layer was made from, in the layer's input space
        report.layers[n]["weight_sqnr_db"] = round(sqnr_db(linears[n].weight, dequantized_weight(layer)), 3)
        qmodel = _replace(qmodel, n, layer)
        if n in observers:
            observers[n].xtx = None  # free the Hessian
    qmodel.qmlir_quant = report
    return qmodel
