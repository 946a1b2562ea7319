"""Regenerate the shipped texts of `qmlir.data` (maintainers only; nothing runs this at test time).

    .venv/bin/python -m qmlir.data.build_texts [--gpl3 FILE] [--check]

The texts are shipped rather than built on each machine because two of them come from the running
CPython (its pydoc topics and its standard-library docstrings) and differ between Python versions:
shipped, every machine calibrates and evaluates on the same tokens. The files were produced by
CPython 3.11.7 and Debian's base-files GPL-3 copy. `--check` compares what this Python would
write with the shipped files (and says which differ) instead of writing.
"""
from __future__ import annotations

import argparse
import gzip
import importlib
import inspect
import sys
import warnings
from pathlib import Path

from qmlir.data import TEXTS, DATA_DIR, digest

CALIBRATION_MODULES = ("argparse", "collections", "json", "logging", "pathlib", "subprocess", "unittest",
                       "threading", "email", "csv", "datetime", "functools", "itertools", "heapq", "textwrap")

# A larger corpus (GPTQ wants tens of thousands of tokens): ~125 pure-Python or always-built
# standard-library modules, their public callables and the methods of their classes.
CORPUS_MODULES = CALIBRATION_MODULES + (
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


def docstrings(modules, methods: bool) -> str:
    """The docstrings of `modules` and of their public functions and classes (and, `methods`, of
    the public methods of those classes), in a fixed order."""
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


def pydoc_topics() -> str:
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def build(gpl3: Path) -> dict:
    return {
        "gpl-3": gpl3.read_text(encoding="utf-8"),
        "pydoc-topics": pydoc_topics(),
        "stdlib-docs": docstrings(CALIBRATION_MODULES, methods=False),
        "stdlib-docs-corpus": docstrings(CORPUS_MODULES, methods=True),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qmlir.data.build_texts", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpl3", type=Path, default=Path("/usr/share/common-licenses/GPL-3"),
                   help="the GPL-3 text to ship (default: Debian's base-files copy)")
    p.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    args = p.parse_args(argv)
    if not args.gpl3.is_file():
        print(f"error: {args.gpl3} is not a file; give --gpl3", file=sys.stderr)
        return 2
    texts = build(args.gpl3)
    differ = []
    for name, text in texts.items():
        fname, _ = TEXTS[name]
        if args.check:
            if digest(text) != TEXTS[name][1]:
                differ.append(name)
            continue
        tmp = DATA_DIR / (fname + ".tmp")
        with open(tmp, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(text.encode("utf-8"))
        tmp.replace(DATA_DIR / fname)
        print(f"{fname}: {len(text)} characters, sha256 {digest(text)}")
    if args.check:
        print("differ: " + ", ".join(differ) if differ else "all texts equal the shipped ones")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
