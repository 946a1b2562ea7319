"""A bounded run of the CLI mutation fuzzer (tests/fuzz/fuzz_cli.py; `make fuzz` runs 5,000
cases): no signal, traceback, internal error or hang, and every rejected input gets an error line."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import fuzz_cli  # noqa: E402


def test_mutated_inputs_get_diagnostics(tmp_path):
    n, failures = fuzz_cli.fuzz(cases=120, seed=0, timeout=60.0, workdir=tmp_path)
    assert n == 120
    assert not failures, "\n".join(f"exit {f.code}: {' '.join(f.argv)}\n{f.stderr[-500:]}" for f in failures)


def test_the_guard_turns_a_crash_into_an_error_line():
    import os
    import signal

    def crashes():
        os.kill(os.getpid(), signal.SIGABRT)
        return 0

    out = fuzz_cli.run_case(lambda argv: crashes(), "qmlir-opt", [], timeout=30.0)
    assert out.code == 1 and "MLIR stopped with SIGABRT" in out.stderr and not out.ok
