"""The shipped texts: present, equal to their recorded SHA-256 (so every machine calibrates and
evaluates on the same tokens), and a missing or altered file is a clear error."""
import gzip
import hashlib

import pytest

from qmlir import data, zoo
from qmlir.errors import QmlirError

# Recorded here as well as in qmlir/data/__init__.py: changing a text needs both edits.
SHA256 = {
    "gpl-3": "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986",
    "pydoc-topics": "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee",
    "stdlib-docs": "6a8d95cf9efddc0e504b66bccae2a76cdf23074bfe66bf2b6beb4c6b078f8e0a",
    "stdlib-docs-corpus": "187fee671b6040ea226d0f7866f9b2930e330dd111946844b3cda79d0e955f9d",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_shipped_text_hash(name):
    fname, _ = data.TEXTS[name]
    raw = gzip.decompress((data.DATA_DIR / fname).read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256[name]
    assert data.text(name) == raw.decode("utf-8")


def test_zoo_texts_are_the_shipped_ones():
    assert zoo.gpl3_text().startswith("                    GNU GENERAL PUBLIC LICENSE")
    assert zoo.pydoc_text() == data.text("pydoc-topics")
    assert zoo.stdlib_docs_text() == data.text("stdlib-docs")
    assert zoo.stdlib_docs_corpus() == data.text("stdlib-docs-corpus")
    # calibration and evaluation texts share no paragraph of substance
    evaluation = set(p for p in (zoo.gpl3_text() + "\n\n" + zoo.pydoc_text()).split("\n\n") if len(p) > 200)
    assert not evaluation & set(zoo.stdlib_docs_corpus().split("\n\n"))


def test_missing_or_altered_text_is_an_error(tmp_path, monkeypatch):
    for name in ("gpl-3", "stdlib-docs"):
        (tmp_path / data.TEXTS[name][0]).write_bytes(gzip.compress(b"something else"))
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    monkeypatch.setattr(data, "_CACHE", {})
    with pytest.raises(QmlirError, match="does not match its recorded SHA-256"):
        data.text("gpl-3")
    with pytest.raises(QmlirError, match="is missing"):
        data.text("pydoc-topics")
    with pytest.raises(QmlirError, match="no shipped text 'nope'"):
        data.text("nope")
