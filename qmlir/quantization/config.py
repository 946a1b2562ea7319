"""`QuantConfig`: every knob of ATen-level quantization, validated at construction, with a
YAML form that round-trips. An unknown key or a bad value is a `QuantConfigError` naming it."""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from qmlir.errors import QmlirError


class QuantConfigError(QmlirError, ValueError):
    """A configuration key or value qmlir does not accept."""


_CHOICES = {
    "weight_dtype": ("int8", "int4", "bf16", "f16"),
    "weight_granularity": ("tensor", "channel", "group"),
    "act_dtype": ("int8", "none"),
    "act_granularity": ("tensor", "token", "block"),
    "act_calib": ("minmax", "absmax", "percentile"),
    "outlier_dtype": ("f16", "bf16", "f32"),
    "weight_algorithm": ("rtn", "gptq"),
}


# The keys a per-layer override (QuantConfig.layers) may set: how one layer is quantized. The
# others are model-wide (calibration, the smoothing searches, which layers are skipped).
LAYER_KEYS = ("weight_dtype", "weight_granularity", "group_size", "weight_symmetric", "weight_algorithm",
              "gptq_damp", "gptq_act_order", "act_dtype", "act_granularity", "act_block", "act_calib", "act_percentile",
              "act_symmetric", "outlier_threshold", "outlier_dtype")


@dataclass
class QuantConfig:
    """How to quantize a model's linear layers.

    weight_dtype        int8 | int4 (integer, symmetric) | bf16 | f16 (a cast)
    weight_granularity  tensor | channel (per output channel) | group (groups of `group_size`
                        input channels per output channel; the usual choice for int4)
    weight_algorithm    rtn (round to nearest) | gptq (error-compensating, needs calibration data)
    gptq_damp           GPTQ: fraction of the Hessian's mean diagonal added to its diagonal
    gptq_act_order      GPTQ: quantize input channels by decreasing activation energy
    gptq_sink_weight    GPTQ: weight of each sequence's first position in the Hessian. The first
                        token is the attention sink of a causal LM: every later token attends to
                        it and its activations carry the model's massive values, so its
                        reconstruction counts more than one token's share (1 = plain GPTQ)
    gptq_sequential     GPTQ: quantize a decoder stack block by block, each block's Hessians
                        from the outputs of the quantized blocks before it (False, the default:
                        all from the float model; on SmolLM2 int4 g128 sequential gave +13.1% /
                        +5.0% perplexity on GPL-3 / pydoc against +12.4% / +5.6%, 30% slower)
    weight_symmetric    False: a zero point per scale (weight-only; int4 any granularity,
                        int8 per tensor or channel)
    act_dtype           int8 (W8A8; with int4 weights W4A8, act_granularity=block) | none (weight-only)
    act_granularity     tensor (static: one scale per layer from calibration) |
                        token (dynamic: one scale per row, computed at run time) |
                        block (dynamic: one scale per `act_block` columns of each row, llama.cpp's
                        Q8_0 activations; weights per channel or in groups of a multiple of act_block)
    act_block           columns per activation scale with act_granularity=block (a multiple of 4)
    act_calib           minmax | absmax | percentile (static activations only)
    act_symmetric       False gives static activations a zero point (minmax range)
    smoothquant_alpha   None (off), a float in [0, 1], or "auto" (per-layer grid search); W8A8
    awq_alpha           activation-aware weight-only quantization (AWQ): None, a float in [0, 1]
                        or "auto"; weight-only int8/int4
    smoothquant_grid    grid points of the "auto" searches over [0, 1]
    outlier_threshold   None, or LLM.int8()'s threshold (6.0): input channels whose calibrated
                        absmax exceeds it keep their weight rows in `outlier_dtype`
    skip                fnmatch patterns of module names left in float (e.g. "lm_head")
    layers              per-layer schemes: {fnmatch pattern of module names: {key: value}} with
                        keys of LAYER_KEYS, e.g. {"*.mlp.down_proj": {"weight_dtype": "int8"}};
                        the first matching pattern wins; each merged scheme is validated
    """

    weight_dtype: str = "int8"
    weight_granularity: str = "channel"
    group_size: int = 128
    weight_symmetric: bool = True
    weight_algorithm: str = "rtn"
    gptq_damp: float = 0.01
    gptq_act_order: bool = True
    gptq_sink_weight: float = 64.0
    gptq_sequential: bool = False
    act_dtype: str = "none"
    act_granularity: str = "tensor"
    act_block: int = 32
    act_calib: str = "absmax"
    act_percentile: float = 99.99
    act_symmetric: bool = True
    smoothquant_alpha: Optional[Union[float, str]] = None
    awq_alpha: Optional[Union[float, str]] = None
    smoothquant_grid: int = 11
    outlier_threshold: Optional[float] = None
    outlier_dtype: str = "f16"
    skip: List[str] = field(default_factory=lambda: ["lm_head"])
    layers: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, choices in _CHOICES.items():
            value = getattr(self, key)
            if value not in choices:
                raise QuantConfigError(f"{key}={value!r}: expected one of {', '.join(choices)}")
        if not isinstance(self.group_size, int) or isinstance(self.group_size, bool) or self.group_size < 2 \
                or self.group_size % 2:
            raise QuantConfigError(f"group_size={self.group_size!r}: expected an even integer >= 2")
        if self.group_size != type(self).__dataclass_fields__["group_size"].default and self.weight_granularity != "group":
            raise QuantConfigError(f"group_size={self.group_size} has no effect with weight_granularity="
                                   f"{self.weight_granularity!r}: set weight_granularity='group'")
        b = self.act_block
        if not isinstance(b, int) or isinstance(b, bool) or b < 4 or b % 4:
            raise QuantConfigError(f"act_block={b!r}: expected a multiple of 4")
        if b != type(self).__dataclass_fields__["act_block"].default and self.act_granularity != "block":
            raise QuantConfigError(f"act_block={b} has no effect with act_granularity={self.act_granularity!r}: "
                                   "set act_granularity='block'")
        if self.act_granularity == "block" and self.weight_granularity == "group" and self.group_size % b:
            raise QuantConfigError(f"act_granularity=block: group_size={self.group_size} must be a multiple of "
                                   f"act_block={b} (one weight scale per activation block)")
        if self.act_granularity == "block" and self.weight_granularity == "tensor":
            raise QuantConfigError("act_granularity=block takes per-channel or grouped weights")
        if not (isinstance(self.act_percentile, (int, float)) and 0 < self.act_percentile <= 100):
            raise QuantConfigError(f"act_percentile={self.act_percentile!r}: expected a number in (0, 100]")
        if self.weight_algorithm == "gptq" and not self.is_integer:
            raise QuantConfigError("weight_algorithm=gptq needs integer weights (int8/int4)")
        for key in ("gptq_damp", "gptq_sink_weight"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0 \
                    or (key == "gptq_sink_weight" and v < 1) or math.isinf(v):
                raise QuantConfigError(f"{key}={v!r}: expected a finite number "
                                       f"{'>= 1' if key == 'gptq_sink_weight' else '>= 0'}")
        for key in ("gptq_act_order", "gptq_sequential"):
            if not isinstance(getattr(self, key), bool):
                raise QuantConfigError(f"{key}={getattr(self, key)!r}: expected true or false")
        if not isinstance(self.weight_symmetric, bool):
            raise QuantConfigError(f"weight_symmetric={self.weight_symmetric!r}: expected true or false")
        if not self.weight_symmetric and self.is_integer:
            if self.act_dtype != "none":
                raise QuantConfigError("weight_symmetric=false is for weight-only quantization: the W8A8 "
                                       "integer matmul takes symmetric weights")
            if self.weight_bits == 8 and self.weight_granularity == "group":
                raise QuantConfigError("weight_symmetric=false with int8 groups is not supported (LLVM 22 "
                                       "cannot parse a sub-channel quant type with a negative zero point)")
        if not isinstance(self.act_symmetric, bool):
            raise QuantConfigError(f"act_symmetric={self.act_symmetric!r}: expected true or false")
        for key in ("smoothquant_alpha", "awq_alpha"):
            a = getattr(self, key)
            if a is not None and a != "auto" and not (isinstance(a, (int, float)) and not isinstance(a, bool)
                                                     and 0.0 <= a <= 1.0):
                raise QuantConfigError(f"{key}={a!r}: expected null, a number in [0, 1] or \"auto\"")
        if not isinstance(self.smoothquant_grid, int) or self.smoothquant_grid < 2:
            raise QuantConfigError(f"smoothquant_grid={self.smoothquant_grid!r}: expected an integer >= 2")
        t = self.outlier_threshold
        if t is not None and not (isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0
                                  and not math.isnan(t)):
            raise QuantConfigError(f"outlier_threshold={t!r}: expected null or a positive number")
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise QuantConfigError(f"skip={self.skip!r}: expected a list of module-name patterns")
        self.skip = list(self.skip)
        if not self.is_integer and (self.act_dtype != "none" or self.outlier_threshold is not None
                                    or self.smoothquant_alpha is not None):
            raise QuantConfigError(f"weight_dtype={self.weight_dtype}: a float cast takes no activation "
                                   "quantization, SmoothQuant or outlier threshold")
        if self.weight_dtype == "int4" and self.act_dtype == "int8" and self.act_granularity != "block":
            raise QuantConfigError("weight_dtype=int4 with act_dtype=int8 (W4A8) takes act_granularity=block "
                                   "(activations quantized per block at run time)")
        if self.weight_dtype == "int4" and self.act_granularity == "block" and self.act_block % 8:
            raise QuantConfigError(f"W4A8: act_block={self.act_block} must be a multiple of 8")
        if self.smoothquant_alpha is not None and self.act_dtype == "none":
            raise QuantConfigError("smoothquant_alpha needs act_dtype=int8 (SmoothQuant migrates activation "
                                   "outliers into the weights for W8A8)")
        if self.awq_alpha is not None and (self.act_dtype != "none" or not self.is_integer):
            raise QuantConfigError("awq_alpha is for weight-only int8/int4 (act_dtype=none); W8A8 takes "
                                   "smoothquant_alpha")
        if self.outlier_threshold is not None and self.act_dtype == "none":
            raise QuantConfigError("outlier_threshold needs act_dtype=int8 (outlier channels bypass "
                                   "activation quantization)")
        self._check_layers()

    def _check_layers(self) -> None:
        if not isinstance(self.layers, dict):
            raise QuantConfigError(f"layers={self.layers!r}: expected a mapping of module-name patterns "
                                   "to per-layer settings")
        self.layers = dict(self.layers)
        self._merged: Dict[str, "QuantConfig"] = {}
        for pattern, override in self.layers.items():
            if not isinstance(pattern, str) or not pattern:
                raise QuantConfigError(f"layers: {pattern!r} is not a module-name pattern")
            if not isinstance(override, dict):
                raise QuantConfigError(f"layers[{pattern!r}]: expected a mapping of keys to values, "
                                       f"got {type(override).__name__}")
            bad = sorted(set(override) - set(LAYER_KEYS))
            if bad:
                raise QuantConfigError(f"layers[{pattern!r}]: {', '.join(map(str, bad))} cannot be set per layer; "
                                       f"per-layer keys: {', '.join(LAYER_KEYS)}")
            merged = {**{k: getattr(self, k) for k in (f.name for f in dataclasses.fields(self))},
                      **override, "layers": {}}
            if merged["weight_granularity"] != "group" and "group_size" not in override:
                merged["group_size"] = type(self).__dataclass_fields__["group_size"].default
            try:
                self._merged[pattern] = QuantConfig(**merged)
            except QuantConfigError as e:
                raise QuantConfigError(f"layers[{pattern!r}]: {e}") from None

    def for_layer(self, name: str) -> "QuantConfig":
        """The scheme of the layer named `name`: the first `layers` pattern it matches merged into
        this config, or this config."""
        for pattern in self.layers:
            if fnmatch.fnmatchcase(name, pattern):
                return self._merged[pattern]
        return self

    def layer_pattern(self, name: str) -> Optional[str]:
        return next((p for p in self.layers if fnmatch.fnmatchcase(name, p)), None)

    @property
    def is_integer(self) -> bool:
        return self.weight_dtype in ("int8", "int4")

    @property
    def weight_bits(self) -> int:
        return 4 if self.weight_dtype == "int4" else 8

    @property
    def static_activations(self) -> bool:
        return self.act_dtype == "int8" and self.act_granularity == "tensor"

    @property
    def needs_calibration(self) -> bool:
        return self.static_activations or self.smoothquant_alpha is not None or self.outlier_threshold is not None \
            or self.awq_alpha is not None or self.weight_algorithm == "gptq"

    def describe(self) -> str:
        """One line: `W8A8 static, SmoothQuant alpha=0.5, outliers>6`."""
        if not self.is_integer:
            return f"{self.weight_dtype} weights"
        w = f"W{self.weight_bits}"
        gran = f"g{self.group_size}" if self.weight_granularity == "group" else self.weight_granularity
        if not self.weight_symmetric:
            gran += ", asymmetric"
        if self.weight_algorithm == "gptq":
            gran += ", GPTQ"
        if self.act_dtype == "none":
            text = f"{w} weight-only ({gran})"
        else:
            kind = "static" if self.static_activations else (
                f"dynamic per block of {self.act_block}" if self.act_granularity == "block" else "dynamic per-token")
            text = f"{w}A8 {kind} ({gran})"
        if self.smoothquant_alpha is not None:
            text += f", SmoothQuant alpha={self.smoothquant_alpha}"
        if self.awq_alpha is not None:
            text += f", AWQ alpha={self.awq_alpha}"
        if self.outlier_threshold is not None:
            text += f", outliers>{self.outlier_threshold:g} in {self.outlier_dtype}"
        return text

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> "QuantConfig":
        if not isinstance(data, dict):
            raise QuantConfigError(f"a quantization config is a mapping of keys to values, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QuantConfigError(f"unknown key(s) {', '.join(map(str, unknown))}; known keys: {', '.join(sorted(known))}")
        return cls(**data)

    def to_yaml(self, path: Optional[Union[str, Path]] = None) -> str:
        import yaml
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: Union[str, Path]) -> "QuantConfig":
        """Read a config from a YAML file (a path) or YAML text."""
        import yaml
        as_path = isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and (
            Path(source).exists() or source.endswith((".yaml", ".yml"))))
        if as_path:
            try:
                text = Path(source).read_text(encoding="utf-8")
            except IsADirectoryError:
                raise QuantConfigError(f"'{source}' is a directory, not a YAML file") from None
            except OSError as e:
                raise QuantConfigError(f"cannot read '{source}': {e.strerror or e}") from None
            except UnicodeDecodeError as e:
                raise QuantConfigError(f"'{source}' is not UTF-8 text (byte {e.start})") from None
        elif isinstance(source, str):
            text = source
        else:
            raise QuantConfigError(f"from_yaml takes a path or YAML text, got {type(source).__name__}")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise QuantConfigError(f"invalid YAML: {e}") from None
        return cls.from_dict(data or {})


def _checked_init(init):
    """QuantConfig(...) with an unknown keyword or extra positional values is a QuantConfigError
    naming the known keys (the dataclass alone raises a bare TypeError)."""
    def __init__(self, *args, **kwargs):
        known = [f.name for f in dataclasses.fields(QuantConfig)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown or len(args) > len(known):
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"{len(args)} positional values"
            raise QuantConfigError(f"{what}; known keys: {', '.join(sorted(known))}")
        init(self, *args, **kwargs)
    __init__.__doc__ = init.__doc__
    return __init__


QuantConfig.__init__ = _checked_init(QuantConfig.__init__)


PRESETS = {
    "bf16": QuantConfig(weight_dtype="bf16"),
    "f16": QuantConfig(weight_dtype="f16"),
    "int8-weight-only": QuantConfig(weight_dtype="int8", weight_granularity="channel"),
    "int4-g128": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128),
    "int4-g128-awq": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128, awq_alpha="auto"),
    "int4-g128-asym": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128,
                                  weight_symmetric=False),
    "int4-g128-asym-awq": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128,
                                      weight_symmetric=False, awq_alpha="auto"),
    "int4-g128-gptq": QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128,
                                  weight_symmetric=False, weight_algorithm="gptq"),
    "w8a8-static": QuantConfig(act_dtype="int8", act_granularity="tensor"),
    "w8a8-dynamic": QuantConfig(act_dtype="int8", act_granularity="token"),
    # llama.cpp's Q8_0: weights in groups of 32, activations quantized per block of 32 at run time,
    # lm_head too (SmolLM2 on GPL-3, 1024 tokens: 19.30 float, 19.17 with lm_head in float, 19.16)
    "w8a8-block32": QuantConfig(act_dtype="int8", act_granularity="block", act_block=32,
                                weight_granularity="group", group_size=32, skip=[]),
    # llama.cpp's Q4_0 x Q8_0: int4 weights in groups of 32, activations per block of 32; lm_head in 8 bits
    "w4a8-block32": QuantConfig(weight_dtype="int4", act_dtype="int8", act_granularity="block", act_block=32,
                                weight_granularity="group", group_size=32, skip=[],
                                layers={"lm_head": {"weight_dtype": "int8"}}),
    "w8a8-smoothquant": QuantConfig(act_dtype="int8", act_granularity="tensor", smoothquant_alpha=0.5),
    "w8a8-outliers": QuantConfig(act_dtype="int8", act_granularity="tensor", outlier_threshold=6.0),
    "w8a8-smoothquant-auto": QuantConfig(act_dtype="int8", act_granularity="tensor", smoothquant_alpha="auto"),
    "w8a8-smoothquant-outliers": QuantConfig(act_dtype="int8", act_granularity="tensor", smoothquant_alpha="auto",
                                             outlier_threshold=6.0),
}
# A preset names layers some models lack (w4a8-block32's lm_head): where a model has no such
# layer the pattern does not apply (a user's own `layers` pattern matching nothing is an error).
for _preset in PRESETS.values():
    _preset._lenient_layers = True
