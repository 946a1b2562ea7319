"""The direct path: torch.export -> core-ATen decomposition -> one functional graph with
parameters, buffers and constants lifted to inputs. The exported program keeps references
to the module's own tensors, so compiled code is reused across weights without copies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Tuple

import torch
import torch.fx
from torch.export.graph_signature import InputKind, OutputKind

from qmlir.errors import QmlirError, UnsupportedOpError


@dataclass
class ExportedGraph:
    graph_module: torch.fx.GraphModule
    # one entry per remaining placeholder: ("state", tensor) or ("user", flat-input position)
    bindings: List[Tuple[str, Any]]
    in_spec: Any
    out_spec: Any
    # flat user inputs that were not tensors and got baked in: position -> value
    constants: dict


def export(model: torch.nn.Module, args: tuple, kwargs: dict | None = None) -> ExportedGraph:
    kwargs = kwargs or {}
    try:
        with torch.no_grad():
            ep = torch.export.export(model, tuple(args), kwargs)
            ep = ep.run_decompositions()
    except torch._dynamo.exc.Unsupported as e:
        raise QmlirError(f"torch.export could not capture the model: {e}") from None
    sig = ep.graph_signature
    bad = [s for s in sig.output_specs if s.kind != OutputKind.USER_OUTPUT]
    if bad:
        raise UnsupportedOpError([("output", f"the model mutates state ({bad[0].kind.name} of {bad[0].target}); "
                                   "qmlir compiles inference graphs (call model.eval())")])
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    gm = ep.graph_module
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    bindings, constants, user_pos = [], {}, 0
    for node, spec in zip(placeholders, sig.input_specs):
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            tensor = named.get(spec.target)
            if tensor is None:
                tensor = ep.state_dict.get(spec.target, ep.constants.get(spec.target))
            bindings.append(("state", tensor))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            bindings.append(("state", ep.constants[spec.target]))
        elif spec.kind == InputKind.USER_INPUT:
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                if node.users:
                    raise UnsupportedOpError([("input", f"non-tensor input {node.name} is used by the graph")])
                constants[user_pos] = val
                gm.graph.erase_node(node)
            else:
                bindings.append(("user", user_pos))
            user_pos += 1
        else:
            raise UnsupportedOpError([("input", f"input kind {spec.kind.name} ({node.name})")])
    gm.recompile()
    return ExportedGraph(gm, bindings, ep.call_spec.in_spec, ep.call_spec.out_spec, constants)
