"""The README's accuracy table: SmolLM2-135M perplexity per quantization mode (eager, which is
the reference the compiled code matches), on the first 1024 tokens of the GPL-3 text and of
CPython's pydoc topics, calibrated on CPython standard-library docstrings (8 x 128 tokens; the
GPTQ row: 128 x 512 tokens spread over the larger docstring corpus); all three texts are the
files shipped in qmlir.data. About 15 minutes on 2 cores.

    .venv/bin/python examples/quant_table.py
"""
from __future__ import annotations

import time

import torch

import qmlir
from qmlir import zoo
from qmlir.evaluation import perplexity, spread_windows, token_windows

ROWS = [
    ("fp32", None),
    ("bf16 weights", "bf16"),
    ("int8 weight-only, per channel", "int8-weight-only"),
    ("int4 weight-only, g128", "int4-g128"),
    ("int4 weight-only, g128, asymmetric", "int4-g128-asym"),
    ("int4 weight-only, g128 + AWQ (auto)", "int4-g128-awq"),
    ("int4 weight-only, g128, asymmetric + AWQ (auto)", "int4-g128-asym-awq"),
    ("int4 weight-only, g128, asymmetric + GPTQ (128 x 512 calibration tokens)*", "int4-g128-gptq"),
    ("W8A8 static, naive", "w8a8-static"),
    ("W8A8 static + SmoothQuant 0.5", "w8a8-smoothquant"),
    ("W8A8 static + SmoothQuant auto", "w8a8-smoothquant-auto"),
    ("W8A8 static + outlier channels (>6) in f16", "w8a8-outliers"),
    ("W8A8 static + SmoothQuant auto + outlier channels (>6) in f16", "w8a8-smoothquant-outliers"),
    ("W8A8 dynamic per token", "w8a8-dynamic"),
]


def main() -> None:
    torch.manual_seed(0)
    model, tok = zoo.smollm2()
    texts = {"GPL-3": zoo.gpl3_text(), "pydoc topics": zoo.pydoc_text()}
    windows = {k: token_windows(tok, v, 1024, 512) for k, v in texts.items()}
    calib = token_windows(tok, zoo.stdlib_docs_text(), 8 * 128, 128)
    big_calib = spread_windows(tok, zoo.stdlib_docs_corpus(), 128, 512)
    base = {}
    print("| mode | " + " | ".join(f"ppl {k} (Δ)" for k in texts) + " | quantize s |")
    print("| --- | " + " | ".join("---" for _ in texts) + " | --- |")
    for label, preset in ROWS:
        t0 = time.perf_counter()
        m = model if preset is None else qmlir.quantize(
            model, big_calib if preset == "int4-g128-gptq" else calib, preset, progress=False)
        tq = time.perf_counter() - t0
        cells = []
        for k, w in windows.items():
            p = perplexity(lambda ids: m(ids).logits, w)
            base.setdefault(k, p)
            cells.append(f"{p:.2f} ({100 * (p / base[k] - 1):+.1f}%)")
        print(f"| {label} | " + " | ".join(cells) + f" | {tq:.0f} |", flush=True)


if __name__ == "__main__":
    main()
