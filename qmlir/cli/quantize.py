"""`qmlir quantize MODEL (--preset NAME | --config FILE.yaml) -o OUT.safetensors`: qmlir.quantize
on calibration text, written by qmlir.save_quantized as one file."""
from __future__ import annotations

import argparse

from qmlir.cli import common


def add_parser(sub) -> None:
    from qmlir.quantization import PRESETS
    p = sub.add_parser(
        "quantize", help="quantize a model and write one .safetensors file",
        description="Quantize MODEL's linear layers with qmlir.quantize (calibrated on text when the "
                    "scheme needs it) and write the quantized model to one safetensors file "
                    "(qmlir.save_quantized: the weights, the config and every layer's parameters).",
        epilog="presets: " + ", ".join(PRESETS) + "\nexample: qmlir quantize smollm2 --preset "
               "w8a8-smoothquant-outliers -o smollm2-w8a8.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    common.model_arg(p)
    scheme = p.add_mutually_exclusive_group(required=True)
    scheme.add_argument("--preset", metavar="NAME", help="a qmlir.quantization preset (listed below)")
    scheme.add_argument("--config", metavar="FILE.yaml", help="a QuantConfig as YAML (e.g. from qmlir autoquant)")
    common.calibration_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors", help="the file to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    import qmlir
    from qmlir.quantization.quantize import resolve_config
    out = common.check_output_file(args.output, args.force)
    cfg = resolve_config(args.preset if args.preset is not None else _yaml_path(args.config))
    loaded = common.load_model(args.model)
    common.say(f"qmlir quantize: {loaded.description}; scheme {cfg.describe()}")
    # always given: weight-only schemes ignore it, any layer that needs it (W8A8, SmoothQuant,
    # outliers, GPTQ; per-layer schemes included) has it
    calib = common.calibration(loaded.tokenizer, args.calib, args.calib_corpus, args.calib_samples,
                               args.calib_tokens)
    if cfg.needs_calibration or cfg.layers:
        common.say(f"calibration: {len(calib)} x {calib[0].shape[1]} tokens")
    watch = common.Stopwatch()
    qmodel = qmlir.quantize(loaded.model, calib, cfg, progress=True)
    common.say(qmodel.qmlir_quant.summary())
    qmlir.save_quantized(qmodel, out)
    size, base = out.stat().st_size, common.model_bytes(loaded.model)
    print(f"wrote {out} ({common.human_bytes(size)}; the float model: {common.human_bytes(base)}) "
          f"in {watch.seconds:.1f} s")
    return 0


def _yaml_path(path: str) -> str:
    from pathlib import Path
    if not Path(path).is_file():
        raise common.CliError(f"--config '{path}': no such file")
    if not path.endswith((".yaml", ".yml")):
        raise common.CliError(f"--config '{path}': expected a .yaml file")
    return path

