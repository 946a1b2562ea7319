"""Print the table of supported ATen ops, generated from the lowering registry, as Markdown.

    python -m qmlir.tools.supported_ops          # the table the README shows
"""
from __future__ import annotations

import inspect
import sys
from collections import defaultdict

from qmlir.dialect_ops import registry


def table() -> str:
    by_family = defaultdict(list)
    for op in registry.registered_ops():
        fn = registry.lookup(op)
        family = inspect.getmodule(fn).__name__.rsplit(".", 1)[-1]
        by_family[family].append(registry.op_name(op))
    lines = ["| family | ATen overloads |", "| --- | --- |"]
    for family in sorted(by_family):
        ops = ", ".join(f"`{name.removeprefix('aten.')}`" for name in sorted(by_family[family]))
        lines.append(f"| {family} | {ops} |")
    total = sum(len(v) for v in by_family.values())
    lines.append(f"\n{total} ATen overloads in {len(by_family)} families.")
    return "\n".join(lines)


def main() -> int:
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
