"""The `qmlir` command: the quantize -> eval -> generate -> report flow on the public Python API
(`qmlir.quantize`, `save_quantized` / `load_quantized`, `torch.compile(backend="qmlir")`), one
module per subcommand. `qmlir.cli.main.entry` is the console script."""
