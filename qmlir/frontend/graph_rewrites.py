"""Rewrites of the ATen graph before it is imported (the importer's graph hooks).

`fold_repeated_kv`: grouped-query attention without the repeated keys and values.
`scale_scores_not_keys`: attention scales its scores, not a transposed copy of the keys.

Models with fewer key/value heads than query heads (Llama, Mistral, Qwen2, Gemma: Hugging
Face's `repeat_kv`) repeat each key/value head `rep` times before attention. In the ATen graph
that is `view(clone(expand(unsqueeze(kv, 2), [b, kvh, rep, s, d])), [b, kvh * rep, s, d])`: a
copy `rep` times the size of the cache, made for every layer at every decode step, then read
again by the attention's batched matmul (and, for the keys, transposed and scaled in another
full-size copy). This rewrite feeds the batched matmul the key/value heads themselves, with the
query heads of a group stacked as rows:

    bmm(q [b*kvh*rep, m, d], view(per-head ops(repeat(kv)), [b*kvh*rep, d, s]))
 -> view(bmm(view(q, [b*kvh, rep*m, d]), view(per-head ops(kv), [b*kvh, d, s])), [b*kvh*rep, m, s])

which is the same arithmetic (each query row meets the same key/value head), reads the cache
once, and turns a decode step's M=1 matmuls into M=rep ones. Per-head ops are the ones that
leave the batch and head dims alone: permutes of the last two dims, multiplication or division
by a scalar, an expand to the same shape, clones. Anything else leaves the graph as it is.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.fx

aten = torch.ops.aten

_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
_SCALAR_OPS = {aten.mul.Scalar, aten.div.Scalar, aten.mul.Tensor, aten.div.Tensor}


def _shape(node) -> Optional[list]:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return [int(s) for s in val.shape] if isinstance(val, torch.Tensor) else None


def _repeat_source(node: torch.fx.Node):
    """(kv, rep) when `node` is `view(clone?(expand(unsqueeze(kv, 2), [b, kvh, rep, s, d])), [b, kvh*rep, s, d])`."""
    if node.target not in _VIEWS:
        return None
    src = node.args[0]
    if isinstance(src, torch.fx.Node) and src.target == aten.clone.default and len(src.users) == 1:
        src = src.args[0]
    if not (isinstance(src, torch.fx.Node) and src.target == aten.expand.default and len(src.users) == 1):
        return None
    unsq = src.args[0]
    if not (isinstance(unsq, torch.fx.Node) and unsq.target == aten.unsqueeze.default and unsq.args[1] == 2
            and len(unsq.users) == 1):
        return None
    kv = unsq.args[0]
    kv_shape, out = _shape(kv), _shape(node)
    exp = _shape(src)
    if kv_shape is None or out is None or exp is None or len(kv_shape) != 4 or len(exp) != 5:
        return None
    b, kvh, s, d = kv_shape
    rep = exp[2]
    if exp != [b, kvh, rep, s, d] or out != [b, kvh * rep, s, d] or rep <= 1:
        return None
    return kv, rep


def _is_scalar_operand(a) -> bool:
    if isinstance(a, (int, float)):
        return True
    return _shape(a) == []  # a 0-d tensor


def _chain_to_bmm(start: torch.fx.Node) -> Optional[List[torch.fx.Node]]:
    """The per-head ops from `start` (the repeated kv) to a bmm that takes their result as its
    second operand, through the view that merges batch and heads; None if the chain is other."""
    chain, node = [], start
    while True:
        if len(node.users) != 1:
            return None
        user = next(iter(node.users))
        shape = _shape(user)
        if user.target == aten.permute.default and list(user.args[1])[:2] == [0, 1] and \
                sorted(list(user.args[1])[2:]) == [2, 3]:
            chain.append(user)
        elif user.target in _SCALAR_OPS and user.args[0] is node and _is_scalar_operand(user.args[1]):
            chain.append(user)
        elif user.target == aten.expand.default and shape == _shape(node):
            chain.append(user)
        elif user.target == aten.clone.default:
            chain.append(user)
        elif user.target in _VIEWS and shape is not None and len(shape) == 3 and \
                shape == [_shape(node)[0] * _shape(node)[1]] + _shape(node)[2:]:
            chain.append(user)
            bmm = next(iter(user.users)) if len(user.users) == 1 else None
            if bmm is not None and bmm.target == aten.bmm.default and bmm.args[1] is user:
                chain.append(bmm)
                return chain
            return None
        else:
            return None
        node = user


def fold_repeated_kv(gm: torch.fx.GraphModule) -> int:
    """Rewrite every repeated key/value feeding a batched matmul (see the module docstring);
    returns how many. The graph's results are unchanged."""
    graph = gm.graph
    done = 0
    for node in list(graph.nodes):
        found = _repeat_source(node) if node.op == "call_function" else None
        if found is None:
            continue
        kv, rep = found
        chain = _chain_to_bmm(node)
        if chain is None:
            continue
        bmm = chain[-1]
        merge = chain[-2]
        q = bmm.args[0]
        q_shape, out_shape = _shape(q), _shape(bmm)
        b, kvh = _shape(kv)[0], _shape(kv)[1]
        if q_shape is None or out_shape is None or q_shape[0] != b * kvh * rep:
            continue
        m, k = q_shape[1], q_shape[2]
        with graph.inserting_before(bmm):
            value = kv
            for op in chain[:-2]:  # the per-head ops, on kvh heads instead of kvh * rep
                if op.target == aten.expand.default or op.target == aten.clone.default:
                    continue
                value = graph.call_function(op.target, (value,) + tuple(op.args[1:]), dict(op.kwargs))
            tail = _shape(merge)[1:]
            # reshape, not view: the graph must still run eagerly if qmlir cannot compile it
            kv3 = graph.call_function(aten.reshape.default, (value, [b * kvh] + tail))
            q3 = graph.call_function(aten.reshape.default, (q, [b * kvh, rep * m, k]))
            prod = graph.call_function(aten.bmm.default, (q3, kv3))
            out = graph.call_function(aten.reshape.default, (prod, out_shape))
        bmm.replace_all_uses_with(out)
        expand = node.args[0] if node.args[0].target == aten.expand.default else node.args[0].args[0]
        dead = list(reversed(chain)) + [node] + ([node.args[0]] if node.args[0] is not expand else []) + \
            [expand, expand.args[0]]  # the chain, then the repeat: view, clone, expand, unsqueeze
        for n in dead:
            if not n.users:
                graph.erase_node(n)
        done += 1
    if done:
        _propagate_meta(gm)
        gm.recompile()
    return done


_SCALE_OPS = {aten.mul.Scalar, aten.div.Scalar}


def _swaps_last_two(node) -> bool:
    if node.target != aten.permute.default:
        return False
    perm, rank = list(node.args[1]), len(node.args[1])
    return rank >= 3 and perm == list(range(rank - 2)) + [rank - 1, rank - 2]


def scale_scores_not_keys(gm: torch.fx.GraphModule) -> int:
    """Rewrite `bmm(a, view(scale(permute(k, swap last two)), [b, d, s]))` (the key side of the
    core-ATen attention decomposition, which scales q and k by sqrt(scale) each; expands to
    their own shape in between are skipped) as
    `scale(bmm(a, permute(reshape(k, [b, s, d]), [0, 2, 1])))`: the scores [b, m, s] are
    scaled instead of a transposed [b, d, s] copy of the whole key cache, and the transpose
    feeding the bmm folds into its operand layout (qmlir-fold-transpose-into-matmul), so the
    keys are read once, in place. The same products up to the order of two scalar
    multiplications. Returns how many were rewritten."""
    graph = gm.graph
    done = 0
    for bmm in list(graph.nodes):
        if bmm.op != "call_function" or bmm.target != aten.bmm.default:
            continue
        view = bmm.args[1]
        if not isinstance(view, torch.fx.Node) or view.target not in _VIEWS or len(view.users) != 1:
            continue
        scale, same = view.args[0], []
        while isinstance(scale, torch.fx.Node) and scale.target == aten.expand.default and \
                len(scale.users) == 1 and _shape(scale) == _shape(scale.args[0]):
            same.append(scale)  # an expand to its own shape: nothing
            scale = scale.args[0]
        if not isinstance(scale, torch.fx.Node) or scale.target not in _SCALE_OPS or len(scale.users) != 1 \
                or not isinstance(scale.args[1], (int, float)):
            continue
        perm = scale.args[0]
        if not isinstance(perm, torch.fx.Node) or not _swaps_last_two(perm) or len(perm.users) != 1:
            continue
        k = perm.args[0]
        k_shape, v_shape = _shape(k), _shape(view)
        if k_shape is None or v_shape is None or len(v_shape) != 3:
            continue
        lead = 1
        for d in k_shape[:-2]:
            lead *= d
        if v_shape != [lead, k_shape[-1], k_shape[-2]]:
            continue
        with graph.inserting_before(bmm):
            k3 = graph.call_function(aten.reshape.default, (k, [lead, k_shape[-2], k_shape[-1]]))
            kt = graph.call_function(aten.permute.default, (k3, [0, 2, 1]))
            prod = graph.call_function(aten.bmm.default, (bmm.args[0], kt))
            out = graph.call_function(scale.target, (prod, scale.args[1]))
        bmm.replace_all_uses_with(out)
        for n in [bmm, view] + same + [scale, perm]:
            if not n.users:
                graph.erase_node(n)
        done += 1
    if done:
        _propagate_meta(gm)
        gm.recompile()
    return done


def _propagate_meta(gm: torch.fx.GraphModule) -> None:
    """Fill `meta["val"]` of the nodes the rewrite added, from their inputs' fake values."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    mode = None
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and hasattr(val, "fake_mode"):
            mode = val.fake_mode
            break
    if mode is None:
        mode = FakeTensorMode()
    with mode:
        for node in gm.graph.nodes:
            if node.op != "call_function" or "val" in node.meta:
                continue
            args = torch.fx.node.map_arg(node.args, lambda n: n.meta["val"])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: n.meta["val"])
            node.meta["val"] = node.target(*args, **kwargs)
