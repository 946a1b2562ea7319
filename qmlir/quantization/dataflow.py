"""Where each linear layer's input comes from, read off the model's traced ATen graph.

SmoothQuant divides a linear's input channels by s and multiplies its weight columns by s. The
1/s costs nothing when it can be folded into whatever produced the input, and that is a
question about the dataflow, not about module names: `torch.export` traces the model on one
calibration input, and for every value that feeds linears we walk up from it to the first
producer that is a per-channel gain we can rescale:

  * a LayerNorm / RMSNorm op (`aten.layer_norm`, `aten.rms_norm`): its weight and bias / s;
  * a hand-written norm's gain: `x * g` where g is a 1-D parameter, optionally cast or offset
    by a constant (Gemma's `x * (1 + w)`): g / s, i.e. w' = (w + c) / s - c;
  * another linear layer (its output rows and bias / s), such as Llama's up_proj feeding
    down_proj through `act(gate) * up`, or OPT's fc1 through a ReLU.

On the way up, only ops that commute with a positive per-channel scale are crossed: casts,
copies, eval-mode dropout, ReLU (positively homogeneous), reshapes that keep the channel
(last) dimension, multiplication by a constant, and one factor of an elementwise product. Every
value on the path must feed nothing but the path (a norm whose output also feeds a residual,
as in BERT's post-norm blocks, cannot be rescaled), and the value at the top must feed only
linear layers, which then share one s. Everything else keeps an explicit x * (1/s) (attention
outputs: their channels pass through softmax(QK^T)V and, under grouped-query attention, are
shared by several heads; GELU/SiLU outputs).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

aten = torch.ops.aten

_IGNORED_USERS = {aten._assert_tensor_metadata.default, aten._assert_scalar.default}
# ops f(x) with f(x / s) = f(x) / s for a positive per-channel s
_CROSSED = {aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten._to_copy.default, aten.clone.default,
            aten.contiguous.default, aten.alias.default, aten.detach.default, aten.dropout.default,
            aten.relu.default, aten.relu_.default, aten.type_as.default}
_RESHAPES = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints}
_NORMS = {aten.layer_norm.default: (2, 3), aten.rms_norm.default: (2, None)}  # op -> (weight arg, bias arg)
_GAIN_PASS = {aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten._to_copy.default, aten.clone.default,
              aten.detach.default, aten.type_as.default}


@dataclass(frozen=True)
class Fold:
    """Where a group's 1/s goes.

    kind "norm":  `weight` (and `bias`) are 1-D parameters: weight' = (weight + offset) / s - offset,
                  bias' = bias / s.
    kind "rows":  `module` is an nn.Linear whose output feeds the group: its weight rows and
                  bias / s."""

    kind: str
    module: str                 # the module owning the parameters (for messages and reports)
    weight: str = ""            # parameter names, "norm" kind
    bias: Optional[str] = None
    offset: float = 0.0


@dataclass
class Consumers:
    """Linear layers that read one value, and where that value's 1/s can be folded (None: it
    stays an explicit multiply)."""

    linears: List[str]
    fold: Optional[Fold]
    why: str = ""               # why it could not be folded


def _op(node) -> str:
    """'aten.gelu' for messages."""
    t = node.target
    return f"aten.{t._schema.name.split('::')[-1]}" if hasattr(t, "_schema") else str(t)


class _Probe(torch.nn.Module):
    """The model with its output flattened to tensors (export keeps only what an output uses)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.m = model

    def forward(self, *args, **kwargs):
        out = self.m(*args, **kwargs)
        leaves = [t for t in torch.utils._pytree.tree_leaves(_plain(out)) if isinstance(t, torch.Tensor)]
        return tuple(leaves)


def _plain(out):
    """Model outputs (a transformers ModelOutput is an OrderedDict subclass) as plain containers."""
    if isinstance(out, dict):
        return {k: _plain(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return [_plain(v) for v in out]
    return out if isinstance(out, torch.Tensor) else None


def _args(example) -> Tuple[tuple, dict]:
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    return (example,), {}


def trace(model: torch.nn.Module, example) -> torch.export.ExportedProgram:
    """`model` traced on one input (a tensor, a tuple of positional args, a dict of keyword args)."""
    args, kwargs = _args(example)
    with torch.no_grad():
        return torch.export.export(_Probe(model), args, kwargs, strict=False)


def linear_consumers(model: torch.nn.Module, example, linears: List[str]) -> List[Consumers]:
    """For every value that feeds linear layers of `linears` (module names of nn.Linear layers),
    the layers it feeds and its fold; in graph order. A layer called on several different inputs
    (a shared module) gets its own entry without a fold. If the model cannot be traced, a warning
    says why and every layer gets an explicit scale."""
    try:
        ep = trace(model, example)
    except Exception as e:  # any model code may refuse to be traced; its scales stay explicit
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        warnings.warn(f"qmlir: SmoothQuant could not trace {type(model).__name__} ({type(e).__name__}: {first}); "
                      f"every layer gets an explicit x * (1/s) instead of scales folded into its producer",
                      stacklevel=3)
        return [Consumers([n], None, "the model could not be traced") for n in linears]
    return _Walker(model, ep).consumers(linears)


class _Walker:
    def __init__(self, model: torch.nn.Module, ep: torch.export.ExportedProgram):
        self.graph = ep.graph
        self.modules = dict(model.named_modules())
        params = ep.graph_signature.inputs_to_parameters
        aliases: Dict[int, List[str]] = {}  # tied parameters have several names
        for name, p in model.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(p), []).append(name)
        # placeholder node -> the names of its parameter in `model`
        self.names = {}
        for n in ep.graph.nodes:
            if n.op == "placeholder" and n.name in params:
                fqn = params[n.name][len("m."):]
                self.names[n] = aliases.get(id(model.get_parameter(fqn)), [fqn])
        self.param = {n: names[0] for n, names in self.names.items() if len(names) == 1}
        self.calls: Dict[str, list] = {}  # nn.Linear module -> its aten.linear nodes
        self.readers: Dict = {}  # value -> the nn.Linear modules reading it; both in graph order
        for node in self.graph.nodes:
            mod = self.linear_module(node)
            if mod is not None:
                self.calls.setdefault(mod, []).append(node)
                self.readers.setdefault(node.args[0], []).append(mod)

    def users(self, node) -> list:
        return [u for u in node.users if u.target not in _IGNORED_USERS]

    def linear_module(self, node) -> Optional[str]:
        """The nn.Linear module whose weight `node` (an aten.linear) uses, or None."""
        if node.op != "call_function" or node.target is not aten.linear.default or len(node.args) < 2:
            return None
        bias = node.args[2] if len(node.args) > 2 else None
        for name in self.names.get(node.args[1], []):
            mod = name.rpartition(".")[0]
            if name.rpartition(".")[2] != "weight" or not isinstance(self.modules.get(mod), torch.nn.Linear):
                continue
            if (bias is None) == (self.modules[mod].bias is None) and \
                    (bias is None or (f"{mod}.bias" if mod else "bias") in self.names.get(bias, [])):
                return mod
        return None

    def consumers(self, names: List[str]) -> List[Consumers]:
        chosen = set(names)
        out: List[Consumers] = []
        seen: set = set()
        for x, readers in self.readers.items():
            mods = list(dict.fromkeys(readers))
            if not chosen & set(mods):
                continue
            shared = [m for m in mods if len(self.calls[m]) > 1]
            if shared:  # a module called on several inputs: one weight cannot take two scalings
                for m in mods:
                    if m in chosen and m not in seen:
                        out.append(Consumers([m], None, f"'{m}' is called on more than one input"))
                        seen.add(m)
                continue
            fold, why = self.fold_of(x, mods)
            if fold is None:
                out += [Consumers([m], None, why) for m in mods if m in chosen]
            else:
                out.append(Consumers(mods, fold))
            seen.update(mods)
        # chosen layers the trace never reached as an aten.linear of their own weight
        out += [Consumers([n], None, "its call was not found in the traced graph") for n in names if n not in seen]
        return out

    def fold_of(self, x, mods: List[str]) -> Tuple[Optional[Fold], str]:
        """Where the value `x` (feeding the linears `mods`) gets its 1/s, or (None, why)."""
        if any(self.linear_module(u) is None or u.args[0] is not x for u in self.users(x)):
            return None, "its input also feeds something other than linear layers"
        if x.op != "call_function":
            return None, "its input is a model input"
        if self.channels(x) is None:
            return None, "its input's channel count is unknown"
        return self.walk(x)

    def channels(self, node) -> Optional[int]:
        val = node.meta.get("val") if hasattr(node, "meta") else None
        if not isinstance(val, torch.Tensor) or val.dim() == 0:
            return None
        return int(val.shape[-1])

    def only_feeds(self, node, user) -> bool:
        return self.users(node) == [user]

    def walk(self, node) -> Tuple[Optional[Fold], str]:
        """Up from `node` (whose consumers were checked) to a producer that takes the 1/s."""
        c = self.channels(node)
        while True:
            if node.op != "call_function":
                return None, "no per-channel producer: it comes from a model input"
            t = node.target
            if t in _NORMS:
                return self.norm_fold(node, c)
            if t is aten.linear.default:
                mod = self.linear_module(node)
                if mod is None:
                    return None, "it comes from a linear op that is not an nn.Linear layer"
                if self.modules[mod].out_features != c:
                    return None, f"'{mod}' does not produce its channels"
                if len(self.calls.get(mod, [])) != 1 or len(self.names[node.args[1]]) != 1:
                    return None, f"'{mod}' (its producer) is shared or tied"
                return Fold("rows", mod), ""
            if t is aten.mul.Tensor:
                return self.mul_fold(node, c)
            if t in _RESHAPES and not self.keeps_channels(node):
                return None, f"it comes from {_op(node)}, which makes its channels of other dimensions " \
                             f"(attention heads merged, say)"
            if t in _CROSSED or t in _RESHAPES:
                src = node.args[0]
                if not isinstance(src, torch.fx.Node) or not self.only_feeds(src, node):
                    return None, f"the input of {_op(node)} on its way also feeds other ops"
                node = src
                continue
            return None, f"it comes from {_op(node)}, which does not commute with a per-channel scale"

    def keeps_channels(self, node) -> bool:
        src = node.args[0]
        c_in, c_out = self.channels(src), self.channels(node)
        return c_in is not None and c_in == c_out and c_in > 1

    def mul_fold(self, node, c) -> Tuple[Optional[Fold], str]:
        a, b = node.args[0], node.args[1]
        for gain, other in ((a, b), (b, a)):
            fold = self.gain(gain, c)
            if fold is not None and isinstance(other, torch.fx.Node):
                return fold, ""
        tensors = [v for v in (b, a) if isinstance(v, torch.fx.Node)]
        if len(tensors) == 1:  # times a constant
            if not self.only_feeds(tensors[0], node):
                return None, f"the input of {_op(node)} on its way also feeds other ops"
            return self.walk(tensors[0])
        why = "neither factor of its product has a per-channel producer"
        for v in tensors:  # one factor of an elementwise product takes the whole 1/s
            if self.channels(v) == c and self.only_feeds(v, node) and v.op == "call_function":
                fold, why_v = self.walk(v)
                if fold is not None:
                    return fold, ""
                why = why_v
        return None, why

    def gain(self, node, c) -> Optional[Fold]:
        """A 1-D parameter with c entries, optionally cast and offset by a constant, used only here."""
        offset = 0.0
        while isinstance(node, torch.fx.Node) and node.op == "call_function":
            if node.target is aten.add.Tensor and not offset:
                p, k = node.args[0], node.args[1]
                if not isinstance(p, torch.fx.Node):
                    p, k = k, p
                if not isinstance(k, (int, float)) or not isinstance(p, torch.fx.Node) or len(self.users(p)) != 1:
                    return None
                offset, node = float(k), p
            elif node.target in _GAIN_PASS and len(self.users(node.args[0])) == 1:
                node = node.args[0]
            else:
                return None
        name = self.param.get(node) if isinstance(node, torch.fx.Node) else None
        if name is None or len(self.users(node)) != 1:
            return None
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or tuple(val.shape) != (c,):
            return None
        return Fold("norm", name.rpartition(".")[0], weight=name, offset=offset)

    def norm_fold(self, node, c) -> Tuple[Optional[Fold], str]:
        wi, bi = _NORMS[node.target]
        args = list(node.args)
        w = args[wi] if len(args) > wi else node.kwargs.get("weight")
        b = (args[bi] if len(args) > bi else node.kwargs.get("bias")) if bi is not None else None
        wname = self.param.get(w) if isinstance(w, torch.fx.Node) else None
        if wname is None or len(self.users(w)) != 1:
            return None, "its norm has no weight of its own to rescale"
        bname = None
        if b is not None:
            bname = self.param.get(b) if isinstance(b, torch.fx.Node) else None
            if bname is None or len(self.users(b)) != 1:
                return None, "its norm's bias is not a parameter of its own"
        val = w.meta.get("val")
        if not isinstance(val, torch.Tensor) or tuple(val.shape) != (c,):
            return None, "its norm's weight does not match its channels"
        return Fold("norm", wname.rpartition(".")[0], weight=wname, bias=bname), ""
