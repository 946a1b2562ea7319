"""`qmlir report MODEL --quantized Q.safetensors -o DIR`: one HTML page (DIR/index.html) with PNG
plots beside it, to decide whether a quantized model is good:

- per-layer weight SQNR (the quantized weight against the float weight it was made from) and
  output SQNR (each layer's output in the quantized model against the float model's, on
  calibration text: its own error and everything before it);
- per-channel activation absmax of every layer's input (a heatmap), outlier channels marked;
- SmoothQuant / AWQ scales per layer (their spread), when the model was smoothed;
- the scheme and the kernel qmlir's CPU target chooses for each layer (decode and prefill shapes);
- the model's size and perplexity, float and quantized.

Nothing is written until everything is measured and drawn; then each file is written whole.
"""
from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Dict, List

import torch

from qmlir.cli import common
from qmlir.tools.diagnostics import write_atomically
from qmlir.cli.evaluate import eval_windows, score, text_args

FIGURES = ("sqnr.png", "activations.png", "scales.png", "size_perplexity.png")
DEFAULT_OUTLIER_MARK = 6.0  # LLM.int8()'s threshold, marked when the config has none


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="an HTML report with plots on a quantized model",
        description="Measure the quantized model in --quantized against MODEL and write DIR/index.html "
                    "with PNG plots: per-layer weight and output SQNR, activation absmax per channel with "
                    "outlier channels, SmoothQuant/AWQ scales, each layer's scheme and kernel, size and "
                    "perplexity.",
        epilog="example: qmlir report smollm2 --quantized smollm2-w8a8.safetensors -o report/")
    common.model_arg(p)
    p.add_argument("--quantized", required=True, metavar="Q.safetensors", help="a file written by qmlir quantize")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the directory to write (created)")
    p.add_argument("--force", action="store_true", help="write into DIR even if it is not empty")
    common.calibration_args(p)
    text_args(p, default_tokens=512)
    p.add_argument("--no-kernels", action="store_true", help="skip finding each layer's kernel")
    p.set_defaults(run=run, calib_samples=4)


def _out_dir(path: str, force: bool) -> Path:
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise common.CliError(f"-o '{path}' is a file; give a directory")
    if not d.parent.is_dir():
        raise common.CliError(f"-o '{path}': the directory '{d.parent}' does not exist")
    if d.is_dir() and any(d.iterdir()) and not force:
        raise common.CliError(f"-o '{path}' is not empty; pass --force to write into it")
    return d


def layer_kernels(qmodel: torch.nn.Module, names: List[str], tokens: int) -> Dict[str, str]:
    """'decode kernel / prefill kernel' per layer: each distinct (module, shape) imported once at
    M=1 and M=`tokens` and run through the CPU target's pipeline up to kernel selection."""
    import qmlir
    from qmlir.target import Target
    from qmlir.target.kernel_choice import kernel_choices
    target = Target.cpu()
    modules = dict(qmodel.named_modules())
    seen: Dict[str, str] = {}
    out = {}
    from tqdm.auto import tqdm
    for n in tqdm(names, desc="kernels", unit="layer", leave=False):
        mod = modules[n]
        # what kernel selection looks at: the mode and the layout, not the scale values
        key = repr((type(mod).__name__, getattr(mod, "mode", None), getattr(mod, "bits", None),
                    getattr(mod, "group_size", None), str(getattr(mod, "dtype", "")), mod.in_features,
                    mod.out_features, getattr(mod, "zero_points", None) is None,
                    getattr(mod, "smooth_inv", None) is None, getattr(mod, "n_outliers", 0) > 0))
        if key not in seen:
            picks = []
            for m in (1, tokens):
                x = torch.randn(m, mod.in_features)
                graph = qmlir.import_model(mod, (x,))
                picks.append("+".join(kernel_choices(graph.module, target)) or "-")
            seen[key] = picks[0] if picks[0] == picks[1] else f"{picks[0]} / {picks[1]}"
        out[n] = seen[key]
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _smoothing(info: dict) -> str:
    """'folded into model.layers.0.input_layernorm' / 'explicit (why)' / 'none' / '-'."""
    how = info.get("smooth")
    if how == "folded" and info.get("smooth_into"):
        return f"folded into {info['smooth_into']}"
    if how == "explicit" and info.get("smooth_why"):
        return f"explicit: {info['smooth_why']}"
    return str(how or "-")


def _short(name: str) -> str:
    return name.replace("model.layers.", "L").replace("self_attn.", "").replace("mlp.", "")


def _layer_ticks(ax, names) -> None:
    """At most ~40 layer names along the x axis, one per point."""
    step = max(1, len(names) // 40)
    ax.set_xticks(list(range(len(names)))[::step], [_short(n) for n in names][::step], rotation=90, fontsize=6)


def draw_sqnr(names, weight_db, output_db) -> bytes:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.12), 4))
    xs = range(len(names))
    finite = lambda v: [x if math.isfinite(x) else float("nan") for x in v]  # noqa: E731
    ax.plot(xs, finite(weight_db), "o-", ms=3, label="weight SQNR (vs its float weight)")
    ax.plot(xs, finite(output_db), "s-", ms=3, label="output SQNR in the model (calibration text)")
    ax.set_ylabel("dB (higher is better)")
    ax.set_xlabel("layer")
    _layer_ticks(ax, names)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Per-layer SQNR")
    return _png(fig)


def draw_activations(names, absmax: Dict[str, torch.Tensor], threshold: float) -> tuple:
    """The heatmap of the layers whose input width is the most common one, outliers marked.
    Returns (png, the width shown, how many layers, outlier (layer, channel) count)."""
    import matplotlib.pyplot as plt
    import numpy as np
    widths = [absmax[n].numel() for n in names]
    width = max(set(widths), key=widths.count)
    shown = []
    for n in names:  # one row per distinct input: q/k/v (gate/up) read the same tensor
        if absmax[n].numel() == width and not (shown and torch.equal(absmax[shown[-1]], absmax[n])):
            shown.append(n)
    grid = torch.stack([absmax[n] for n in shown]).numpy()
    fig, ax = plt.subplots(figsize=(10, max(3, len(shown) * 0.08 + 1.5)))
    im = ax.imshow(np.log10(np.maximum(grid, 1e-6)), aspect="auto", interpolation="nearest", cmap="viridis")
    rows, cols = np.nonzero(grid > threshold)
    ax.scatter(cols, rows, s=8, c="red", marker="x", linewidths=0.8, label=f"absmax > {threshold:g}")
    step = max(1, len(shown) // 30)
    ax.set_yticks(range(0, len(shown), step), [_short(n) for n in shown][::step], fontsize=6)
    ax.set_xlabel(f"input channel (of {width})")
    fig.colorbar(im, ax=ax, label="log10 |x| max")
    if len(rows):
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title("Activation absmax per input channel (float model, calibration text)")
    return _png(fig), width, len(shown), int(len(rows))


def draw_scales(names, layers: Dict[str, dict]) -> bytes:
    import matplotlib.pyplot as plt
    smoothed = [n for n in names if "scale_median" in layers.get(n, {})]
    fig, ax = plt.subplots(figsize=(max(8, len(smoothed) * 0.12), 4))
    xs = list(range(len(smoothed)))
    lo = [layers[n]["scale_min"] for n in smoothed]
    mid = [layers[n]["scale_median"] for n in smoothed]
    hi = [layers[n]["scale_max"] for n in smoothed]
    ax.vlines(xs, lo, hi, color="tab:blue", alpha=0.6, label="min..max")
    ax.plot(xs, mid, "o", ms=3, color="tab:orange", label="median")
    ax.set_yscale("log")
    _layer_ticks(ax, smoothed)
    ax.set_ylabel("s (weights x s, activations / s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("SmoothQuant / AWQ scales per layer")
    return _png(fig)


def draw_size_perplexity(rows) -> bytes:
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    labels = [r[0] for r in rows]
    a.bar(labels, [r[1] / 1e6 for r in rows], color=["tab:gray", "tab:green"][:len(rows)])
    a.set_ylabel("MB")
    a.set_title("Size")
    b.bar(labels, [r[2] for r in rows], color=["tab:gray", "tab:green"][:len(rows)])
    b.set_ylabel("perplexity (lower is better)")
    b.set_title("Perplexity")
    lo = min(r[2] for r in rows)
    b.set_ylim(lo * 0.9, max(r[2] for r in rows) * 1.02)
    return _png(fig)


def _fmt_db(v) -> str:
    return "-" if v is None else ("inf" if not math.isfinite(v) else f"{v:.1f}")


def render_html(title: str, facts: List[tuple], figures: List[tuple], table_head: List[str],
                table: List[List[str]]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
             "font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "th{background:#eee}img{max-width:100%;border:1px solid #ddd}</style></head><body>",
             f"<h1>{e(title)}</h1>", "<table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts]
    parts.append("</table>")
    for heading, fname, note in figures:
        parts += [f"<h2>{e(heading)}</h2>", f"<p>{e(note)}</p>" if note else "",
                  f"<img src='{e(fname)}' alt='{e(heading)}'>"]
    parts += ["<h2>Layers</h2>", "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in table_head) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table]
    parts += ["</table>", "</body></html>"]
    return "\n".join(p for p in parts if p)


def run(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    out = _out_dir(args.output, args.force)
    loaded = common.load_model(args.model)
    qmodel = common.load_quantized_over(loaded, args.quantized)
    report = qmodel.qmlir_quant
    names = list(report.layers)
    common.say(f"qmlir report: {loaded.description}, {args.quantized}: {report.summary()}")
    calib = common.calibration(loaded.tokenizer, args.calib, args.calib_corpus, args.calib_samples,
                               args.calib_tokens)
    from qmlir.quantization.layer_stats import compare_layers
    from qmlir.quantization.quantize import dequantized_weight, sqnr_db
    common.say(f"comparing every layer on {len(calib)} x {calib[0].shape[1]} calibration tokens")
    stats = compare_layers(loaded.model, qmodel, calib, names)
    fmods, qmods = dict(loaded.model.named_modules()), dict(qmodel.named_modules())
    weight_db = []
    for n in names:
        if "weight_sqnr_db" in report.layers[n]:
            weight_db.append(float(report.layers[n]["weight_sqnr_db"]))
        elif report.layers[n].get("smooth") in (None, "none"):  # a file from before weight_sqnr_db
            weight_db.append(sqnr_db(fmods[n].weight, dequantized_weight(qmods[n])))
        else:
            weight_db.append(float("nan"))
    output_db = [stats[n].output_sqnr_db for n in names]
    kernels = {} if args.no_kernels else layer_kernels(qmodel, names, calib[0].shape[1])
    windows, what = eval_windows(loaded.tokenizer, args)
    ppl_f, _, _ = score(lambda x: loaded.model(x, use_cache=False).logits, windows, "float32")
    ppl_q, _, _ = score(lambda x: qmodel(x, use_cache=False).logits, windows, "quantized")
    size_f = common.model_bytes(loaded.model)
    size_q = common.model_bytes(qmodel)
    file_size = Path(args.quantized).stat().st_size

    cfg = report.config
    threshold = cfg.outlier_threshold if cfg.outlier_threshold is not None else DEFAULT_OUTLIER_MARK
    files = {"sqnr.png": draw_sqnr(names, weight_db, output_db)}
    act_png, width, n_shown, n_out = draw_activations(names, {n: stats[n].input_absmax for n in names}, threshold)
    files["activations.png"] = act_png
    figures = [("Per-layer SQNR", "sqnr.png", "Weight SQNR: the dequantized weight against the float weight "
                "it was quantized from (after smoothing). Output SQNR: each layer's output in the quantized "
                f"model against the float model's on {len(calib)} x {calib[0].shape[1]} calibration tokens."),
               ("Activation outliers", "activations.png",
                f"{n_shown} layer inputs of {width} channels (layers reading the same input shown once); {n_out} (layer, channel) pairs above {threshold:g}"
                + (" (the config's outlier threshold)" if cfg.outlier_threshold is not None else
                   " (LLM.int8()'s threshold; this config keeps no outlier channels)") + ".")]
    if any("scale_median" in report.layers[n] for n in names):
        files["scales.png"] = draw_scales(names, report.layers)
        figures.append(("SmoothQuant / AWQ scales", "scales.png", "Per smoothed layer: the spread of its "
                        "per-channel scales s."))
    rows = [("float32", size_f, ppl_f), ("quantized", size_q, ppl_q)]
    files["size_perplexity.png"] = draw_size_perplexity(rows)
    figures.append(("Size and perplexity", "size_perplexity.png",
                    f"Perplexity on {what}, {len(windows)} x {args.window} tokens, eager."))
    facts = [("model", loaded.description), ("quantized file", f"{args.quantized} ({common.human_bytes(file_size)})"),
             ("scheme", cfg.describe()), ("summary", report.summary()),
             ("size", f"float32 {common.human_bytes(size_f)}, quantized {common.human_bytes(size_q)} "
                      f"({size_q / size_f:.2f}x)"),
             ("perplexity", f"float32 {ppl_f:.4f}, quantized {ppl_q:.4f} ({100 * (ppl_q / ppl_f - 1):+.2f}%) "
                            f"on {what}")]
    if report.search is not None:
        facts.append(("search", report.search.describe()))
    head = ["layer", "scheme", "kernel (decode / prefill)", "weight SQNR dB", "output SQNR dB", "outliers",
            "smoothing", "alpha"]
    table = []
    for n, wdb, odb in zip(names, weight_db, output_db):
        info = report.layers[n]
        table.append([n, info.get("scheme", cfg.describe()), kernels.get(n, "-"), _fmt_db(wdb), _fmt_db(odb),
                      str(info.get("outliers", "-")), _smoothing(info),
                      "-" if info.get("alpha") is None else f"{info['alpha']:g}"])
    page = render_html(f"qmlir report: {loaded.name} / {Path(args.quantized).name}", facts, figures, head, table)
    out.mkdir(exist_ok=True)
    for fname, data in files.items():
        write_atomically(out / fname, data)
    write_atomically(out / "index.html", page)
    print(f"wrote {out / 'index.html'} ({len(files)} figures); perplexity float32 {ppl_f:.4f}, quantized "
          f"{ppl_q:.4f} ({100 * (ppl_q / ppl_f - 1):+.2f}%)")
    return 0
