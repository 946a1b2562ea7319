"""The run-time checks of a compiled function (qmlir/ir/checks.py): its trailing results, one
tensor<2xi64> [failures, a failing value] per check, turned into an exception after the call."""
from __future__ import annotations

from typing import List, Sequence, Union

import torch

from qmlir.errors import IndexOutOfRangeError


def raise_failed(messages: Sequence[str], results: Union[List[torch.Tensor], torch.Tensor]) -> None:
    """IndexOutOfRangeError with the first failed check's message (all failures counted).
    `results`: one tensor<2xi64> per check, or all of them as one [checks, 2] tensor."""
    if not messages:
        return
    if isinstance(results, torch.Tensor):
        values = results.tolist()
    else:
        values = torch.stack([r.detach().cpu() for r in results]).tolist()  # one sync for all checks
    failed = [(m, v) for m, (n, v) in zip(messages, values) if n]
    if failed:
        message, index = failed[0]
        more = f" ({len(failed) - 1} more check(s) failed)" if len(failed) > 1 else ""
        raise IndexOutOfRangeError(message.replace("{index}", str(index)) + more)
