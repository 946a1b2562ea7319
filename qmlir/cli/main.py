"""`qmlir SUBCOMMAND ...`: argument parsing, and one place that turns every error into one line
on standard error and an exit status (0 done, 1 an error, 2 a usage error, 130 interrupted):
never a traceback."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Sequence

from qmlir.cli import common

EXAMPLES = """examples:
  qmlir quantize smollm2 --preset w8a8-smoothquant-outliers -o smollm2-w8a8.safetensors
  qmlir eval smollm2 --quantized smollm2-w8a8.safetensors --text-corpus pydoc-topics
  qmlir generate smollm2 --quantized smollm2-w8a8.safetensors --prompt 'The GNU GPL is'
  qmlir report smollm2 --quantized smollm2-w8a8.safetensors -o report/
  qmlir autoquant smollm2 --budget 1% -o smollm2-auto.yaml

`qmlir SUBCOMMAND --help` describes each. MODEL is a Hugging Face model directory, a .gguf file
or the name of a model shipped offline (smollm2)."""


def parser() -> argparse.ArgumentParser:
    from qmlir.cli import autoquant, evaluate, generate, quantize, report
    p = argparse.ArgumentParser(prog="qmlir", description="Quantize, evaluate, run and inspect large models "
                                "with qmlir (PyTorch -> MLIR).", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from qmlir import __version__
    p.add_argument("--version", action="version", version=f"qmlir {__version__}")
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module in (quantize, evaluate, generate, report, autoquant):
        module.add_parser(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version (0) or a usage error (2), already printed
        return int(e.code or 0)
    if args.command is None:
        p.print_help(sys.stderr)
        return 2
    from qmlir.errors import QmlirError
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("qmlir: interrupted", file=sys.stderr)
        return 130
    except QmlirError as e:
        print(f"qmlir {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"qmlir {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `qmlir generate ... | head`
        return 0
    except OSError as e:
        print(f"qmlir {args.command}: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
              file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line (QMLIR_TRACEBACK=1 shows where)
        if os.environ.get("QMLIR_TRACEBACK"):
            raise
        print(f"qmlir {args.command}: internal error: {type(e).__name__}: {_one_line(e)[:500]} "
              "(a bug in qmlir; QMLIR_TRACEBACK=1 prints the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.split()) if text else type(e).__name__


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
