"""qmlir-run: run a function of a .mlir file and print or save its results.
This is how an emitted file is checked by hand. It compiles through the same Target and
pipeline as qmlir.compile (quantized IR included: the same integer arithmetic).

    qmlir-run model.mlir --random-inputs --seed 0
    qmlir-run model.mlir --entry forward --input x.npy --input w.npy --output-dir out/
    qmlir-run model.mlir --random-inputs --target 'cpu{features= threads=1}'
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from mlir import ir

from qmlir.errors import QmlirError
from qmlir.ir.specs import TensorSpec
from qmlir.target import as_target, compile_mlir
from qmlir.tools.diagnostics import fail, precheck, read_text, report_mlir_error, run_guarded, write_atomically

TOOL = "qmlir-run"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .mlir file whose entry function takes and returns ranked tensors")
    p.add_argument("--entry", default=None, help="function to run (default: the only public function, or 'forward')")
    p.add_argument("--input", action="append", default=[], metavar="NPY",
                   help="a .npy file per argument, in order (float32 arrays feed bf16/f16 arguments)")
    p.add_argument("--random-inputs", action="store_true", help="random arguments (floats ~ N(0,1), integers in [-8, 8))")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-inputs (default 0)")
    p.add_argument("--output-dir", default=None, help="save each result as DIR/result<i>.npy instead of printing it")
    p.add_argument("--target", default="cpu",
                   help="where to run: 'cpu' (this CPU, the default), 'cpu{features=... threads=N}', or 'cuda'")
    return p


def _inputs(specs: Sequence[TensorSpec], files: Sequence[str], random: bool, seed: int) -> List[torch.Tensor]:
    if files and random:
        raise QmlirError("give either --input files or --random-inputs, not both")
    if random:
        if not 0 <= seed < 2 ** 63:
            raise QmlirError(f"--seed must be in [0, 2**63), got {seed}")
        g = torch.Generator().manual_seed(seed)
        out = []
        for s in specs:
            if s.dtype.is_floating_point:
                out.append(torch.randn(s.shape, generator=g).to(s.dtype))
            elif s.dtype == torch.bool:
                out.append(torch.randint(0, 2, s.shape, generator=g).bool())
            else:
                out.append(torch.randint(-8, 8, s.shape, generator=g).to(s.dtype))
        return out
    if len(files) != len(specs):
        raise QmlirError(f"the function takes {len(specs)} argument(s), got {len(files)} --input file(s)")
    out = []
    for i, (path, s) in enumerate(zip(files, specs)):
        try:
            arr = np.load(path)
        except (OSError, ValueError) as e:
            raise QmlirError(f"input {i}: cannot load '{path}': {e}") from None
        if tuple(arr.shape) != s.shape:
            raise QmlirError(f"input {i} ('{path}'): expected shape {list(s.shape)}, got {list(arr.shape)}")
        out.append(_converted(i, path, arr, s))
    return out


def _converted(i: int, path: str, arr: np.ndarray, s: TensorSpec) -> torch.Tensor:
    """`arr` as a tensor of `s.dtype`, refusing what a cast would change: another kind (complex,
    strings, float into an integer argument) or integers outside the argument's range."""
    where = f"input {i} ('{path}')"
    want = str(s.dtype).replace("torch.", "")
    kind = arr.dtype.kind
    if s.dtype == torch.bool:
        if kind != "b":
            raise QmlirError(f"{where}: the argument is bool, the file holds {arr.dtype}")
    elif s.dtype.is_floating_point:
        if kind != "f":
            raise QmlirError(f"{where}: the argument is {want}, the file holds {arr.dtype} "
                             "(float arrays feed float arguments; float32 ones feed bf16/f16)")
    else:
        if kind not in "iu":
            raise QmlirError(f"{where}: the argument is {want}, the file holds {arr.dtype}")
        info = torch.iinfo(s.dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise QmlirError(f"{where}: values outside {want}'s range [{info.min}, {info.max}]")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(s.dtype)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    context = ir.Context()
    try:
        with context:
            try:
                text = read_text(args.file)
            except OSError as e:
                return fail(TOOL, f"cannot read '{args.file}': {e.strerror}")
            except UnicodeDecodeError as e:
                return fail(TOOL, f"'{args.file}' is not UTF-8 text (byte {e.start}); .mlir files are UTF-8")
            bad = precheck(text)
            if bad is not None:
                print(f"{args.file}:{bad[0]}:{bad[1]}: error: {bad[2]}", file=sys.stderr)
                return 1
            try:
                ir.Module.parse(text)
            except ir.MLIRError as e:
                report_mlir_error(TOOL, e, args.file)
                return 1
            target = as_target(args.target)
            if target.kind == "cuda":
                raise QmlirError("--target cuda: reading and writing CUDA tensors from .npy files is not supported "
                                 "yet; use qmlir.compile(..., target='cuda') from Python")
            compiled = compile_mlir(text, args.entry, target)
            tensors = _inputs(compiled.inputs, args.input, args.random_inputs, args.seed)
        results = compiled(*tensors)
    except ir.MLIRError as e:
        report_mlir_error(TOOL, e, args.file)
        return 1
    except QmlirError as e:
        return fail(TOOL, str(e))
    except MemoryError:
        return fail(TOOL, "not enough memory for the function's arguments or results")
    except RuntimeError as e:
        if "alloc" not in str(e).lower() and "memory" not in str(e).lower():
            raise
        return fail(TOOL, f"not enough memory for the function's arguments or results ({str(e).splitlines()[0]})")
    if args.output_dir:
        try:
            os.makedirs(args.output_dir, exist_ok=True)
            for i, r in enumerate(results):
                arr = r.float().numpy() if r.dtype in (torch.bfloat16, torch.float16) else r.numpy()
                buf = io.BytesIO()
                np.save(buf, arr)
                write_atomically(os.path.join(args.output_dir, f"result{i}.npy"), buf.getvalue())
        except OSError as e:
            return fail(TOOL, f"cannot write to '{args.output_dir}': {e.strerror or e}")
        print(f"{TOOL}: wrote {len(results)} result(s) to {args.output_dir}")
    else:
        torch.set_printoptions(precision=6, threshold=1000)
        for i, r in enumerate(results):
            print(f"result {i}: {str(r.dtype).replace('torch.', '')}{list(r.shape)}")
            print(r)
    return 0


def entry() -> None:
    """Console entry point: no Python traceback and no signal for anything a user can cause."""
    sys.exit(run_guarded(TOOL, main))


if __name__ == "__main__":
    entry()
