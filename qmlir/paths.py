"""Where qmlir keeps what it caches on disk (compiled artifacts, their machine code, models
converted for fast loading): `$QMLIR_CACHE_DIR` if set, else `$XDG_CACHE_HOME/qmlir`, else
`~/.cache/qmlir`; `QMLIR_CACHE_DIR=off` turns every cache off."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def cache_dir() -> Optional[Path]:
    """The cache directory, or None when caching is off."""
    env = os.environ.get("QMLIR_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qmlir"
