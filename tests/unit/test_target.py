"""qmlir.Target values, their pipelines (as data), artifacts (compile -> bytes -> load) and the
derived code fingerprint of the disk cache."""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
import torch

import qmlir
import qmlir.target.base as target_base
import qmlir.target.compile as target_compile
from qmlir.errors import QmlirError
from qmlir.passes.pipeline import Pipeline, PipelineError
from qmlir.runtime.artifact import Artifact, ArtifactError
from qmlir.target import CpuTarget, CudaTarget, Target, TargetError, compile_module, host

PORTABLE = dict(features=(), threads=1)

LINEAR = """
func.func @linear(%x: tensor<4x64xf32>, %w: tensor<16x64xf32>, %b: tensor<16xf32>) -> tensor<4x16xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<64x16xf32>
  %wt = linalg.transpose ins(%w : tensor<16x64xf32>) outs(%e : tensor<64x16xf32>) permutation = [1, 0]
  %o = tensor.empty() : tensor<4x16xf32>
  %f = linalg.fill ins(%z : f32) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul ins(%x, %wt : tensor<4x64xf32>, tensor<64x16xf32>) outs(%f : tensor<4x16xf32>) -> tensor<4x16xf32>
  %bb = linalg.broadcast ins(%b : tensor<16xf32>) outs(%o : tensor<4x16xf32>) dimensions = [0]
  %r = linalg.add ins(%y, %bb : tensor<4x16xf32>, tensor<4x16xf32>) outs(%o : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %r : tensor<4x16xf32>
}
"""


@pytest.fixture(autouse=True)
def no_disk_cache(monkeypatch):
    monkeypatch.setenv("QMLIR_CACHE_DIR", "off")


@pytest.fixture
def no_default_toolkit(monkeypatch):
    """CUDA targets without a toolkit found on this machine (CUDA_HOME, /usr/local/cuda)."""
    monkeypatch.setattr(target_base, "default_toolkit", lambda: "")


# Target values

def test_cpu_text():
    t = qmlir.Target.cpu(features=(), threads=1)
    assert isinstance(t, CpuTarget)
    assert t.text() == "cpu{features= threads=1}"
    assert str(t) == t.text()
    assert Target.cpu(features=("avx512_vnni", "avx512_bf16"), threads=2).text() == \
        "cpu{features=avx512_bf16,avx512_vnni threads=2}"


@pytest.mark.parametrize("target", [
    Target.cpu(features=(), threads=1),
    Target.cpu(features=("avx512_vnni",), threads=2),
    Target.cpu(features=("avx512_bf16", "avx512_vnni"), threads=7),
])
def test_cpu_parse_round_trip(target):
    assert Target.parse(target.text()) == target
    assert Target.parse(target.text()).text() == target.text()


def test_cuda_parse_round_trip(no_default_toolkit):
    t = Target.cuda(chip="sm_80", features="+ptx80", toolkit="")
    assert isinstance(t, CudaTarget)
    assert t.text() == "cuda{chip=sm_80 features=+ptx80 format=isa block-size=256 opt-level=3 toolkit=}"
    assert Target.parse(t.text()) == t
    other = Target.cuda(chip="sm_90a", features="+ptx83", format="bin", block_size=128, opt_level=2,
                        toolkit="/opt/cuda-12")
    assert "toolkit=/opt/cuda-12" in other.text()
    assert Target.parse(other.text()) == other


def test_cuda_without_toolkit_round_trips_where_a_toolkit_is_installed(monkeypatch):
    monkeypatch.setattr(target_base, "default_toolkit", lambda: "/usr/local/cuda")
    t = Target.cuda(chip="sm_80", features="+ptx80", toolkit="")
    assert Target.parse(t.text()) == t


def test_equal_targets_hash_equal(no_default_toolkit):
    a = Target.cpu(features=("avx512_vnni", "avx512_bf16"), threads=2)
    b = Target.parse("cpu{features=avx512_bf16,avx512_vnni threads=2}")
    assert a == b and hash(a) == hash(b)
    assert a != Target.cpu(features=("avx512_bf16",), threads=2)
    assert a != Target.cpu(features=("avx512_bf16", "avx512_vnni"), threads=1)
    c, d = Target.cuda(chip="sm_80", features="+ptx80", toolkit=""), Target.parse("cuda{chip=sm_80}")
    assert c == d and hash(c) == hash(d)
    assert len({a, b, c, d, Target.cpu(**PORTABLE)}) == 3


@pytest.mark.parametrize("make, message", [
    (lambda: Target.parse("tpu"), "unknown target 'tpu' (targets: cpu, cuda)"),
    (lambda: Target.parse("tpu{cores=2}"), "unknown target 'tpu'"),
    (lambda: Target.cpu(features=("avx9000",), threads=1), "unknown CPU feature(s) avx9000"),
    (lambda: Target.parse("cpu{features=avx512_vnni,sse9 threads=1}"), "unknown CPU feature(s) sse9"),
    (lambda: Target.cpu(features=(), threads=0), "threads must be a positive integer, got 0"),
    (lambda: Target.parse("cpu{features= threads=0}"), "threads must be a positive integer, got 0"),
    (lambda: Target.cpu(features=(), threads=-3), "threads must be a positive integer, got -3"),
    (lambda: Target.parse("cpu{features= threads=-1}"), "threads must be a positive integer"),
    (lambda: Target.parse("cpu{features= threads=two}"), "threads must be an integer, got 'two'"),
    (lambda: Target.cuda(chip="gfx90a", features="+ptx80", toolkit=""), "chip must look like sm_90, got 'gfx90a'"),
    (lambda: Target.parse("cuda{chip=ampere}"), "chip must look like sm_90, got 'ampere'"),
    (lambda: Target.cuda(chip="sm_80", format="elf", toolkit=""), "format must be one of isa, bin, fatbin"),
    (lambda: Target.cuda(chip="sm_80", block_size=100, toolkit=""), "block-size must be a multiple of 32"),
    (lambda: Target.parse("cpu{features= threads=1"), "malformed target 'cpu{features= threads=1'"),
    (lambda: Target.parse("cpu{threads}"), "option 'threads' needs a value (key=value)"),
    (lambda: Target.parse("cpu{features= cores=2}"), "unknown option(s) cores (options: features, threads)"),
    (lambda: Target.parse("cuda{chip=sm_80 warp=32}"), "cuda target: unknown option(s) warp"),
    (lambda: qmlir.target.as_target(3), "target must be a qmlir.Target or its name"),
])
def test_bad_targets_are_target_errors(make, message):
    with pytest.raises(TargetError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, QmlirError)


# Pipelines as data

def test_cpu_pipeline_text():
    text = str(Target.cpu(features=("avx512_vnni",), threads=2).pipeline())
    assert text.startswith("builtin.module(qmlir-fuse-quantized-matmul{strict=false},qmlir-lower-quant,")
    assert "qmlir-select-kernels{features=avx512_vnni threads=2}" in text
    assert text.index("qmlir-expand-kernels{stage=tensors}") < text.index("one-shot-bufferize") \
        < text.index("qmlir-expand-kernels{stage=buffers}") < text.index("qmlir-outline-loops")
    # threaded loops run on libgomp's team; what that pass cannot take goes to the async runtime
    assert text.index("qmlir-outline-loops") < text.index("qmlir-forall-to-gomp{threads=2}") \
        < text.index("async-parallel-for{num-workers=2 ")
    assert "qmlir-forall-to-gomp" not in str(Target.cpu(features=(), threads=1).pipeline())


def test_pipelines_round_trip_through_text(no_default_toolkit):
    for target in (Target.cpu(features=("avx512_vnni",), threads=2), Target.cpu(**PORTABLE),
                   Target.cuda(chip="sm_80", features="+ptx80", toolkit="")):
        p = target.pipeline()
        assert Pipeline.parse(str(p)) == p
        assert str(Pipeline.parse(str(p))) == str(p)
        assert [s.name for s in p.qmlir_passes()][:3] == \
            ["qmlir-fuse-quantized-matmul", "qmlir-lower-quant", "qmlir-protect-arguments"]


def test_named_pipeline_is_the_target_pipeline():
    named = Pipeline.parse("builtin.module(qmlir-lower-to-cpu{features=avx512_vnni threads=2})")
    assert named == Target.cpu(features=("avx512_vnni",), threads=2).pipeline()


def test_module_pass_nested_in_a_function_is_a_pipeline_error():
    with pytest.raises(PipelineError, match="qmlir-outline-loops runs on builtin.module; it cannot be nested"):
        Pipeline.parse("builtin.module(func.func(qmlir-outline-loops))")


# Artifacts: compile -> bytes -> load

@pytest.fixture(scope="module")
def artifact():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QMLIR_CACHE_DIR", "off")
        return compile_module(LINEAR, Target.cpu(**PORTABLE))


def test_artifact_round_trip_and_run(artifact):
    assert artifact.kind == "cpu" and artifact.target == "cpu{features= threads=1}"
    assert artifact.func_name == "linear"
    assert [s.shape for s in artifact.inputs] == [(4, 64), (16, 64), (16,)]
    assert [(s.shape, s.dtype) for s in artifact.outputs] == [((4, 16), torch.float32)]
    data = artifact.to_bytes()
    again = Artifact.from_bytes(data)
    assert again == artifact
    assert again.to_bytes() == data
    torch.manual_seed(0)
    x, w, b = torch.randn(4, 64), torch.randn(16, 64), torch.randn(16)
    expected = torch.nn.functional.linear(x, w, b)
    for fn in (Target.cpu(**PORTABLE).load(again), qmlir.target.load(again)):
        (y,) = fn(x, w, b)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_bad_artifact_bytes_are_artifact_errors(artifact):
    data = artifact.to_bytes()
    header_end = 16 + struct.unpack_from("<Q", data, 8)[0]
    for bad, message in [(data[:header_end - 5], "truncated qmlir artifact"),
                         (data[:20], "truncated qmlir artifact"),
                         (data[:10], "not a qmlir artifact"),
                         (b"", "not a qmlir artifact"),
                         (b"NOTQMLIR" + data[8:], "not a qmlir artifact (bad magic)"),
                         (data[:16] + b"{" * (header_end - 16) + data[header_end:], "corrupt qmlir artifact header")]:
        with pytest.raises(ArtifactError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Artifact.from_bytes(bad)
    assert issubclass(ArtifactError, QmlirError)


def _with_header(header: dict, bytecode: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return b"QMLIRART" + struct.pack("<Q", len(h)) + h + bytecode


def test_artifact_of_another_version_is_refused(artifact):
    header = json.loads(artifact.to_bytes()[16:16 + struct.unpack_from("<Q", artifact.to_bytes(), 8)[0]])
    header["version"] = 99
    with pytest.raises(ArtifactError, match="version 99"):
        Artifact.from_bytes(_with_header(header))
    del header["version"]
    with pytest.raises(ArtifactError):
        Artifact.from_bytes(_with_header(header))


def test_artifact_with_an_unknown_dtype_is_an_artifact_error(artifact):
    header = {"version": 1, "kind": "cpu", "target": artifact.target, "func_name": "linear",
              "inputs": [[[4], "float99"]], "outputs": [], "libraries": [], "extras": {}, "lower_seconds": 0.0}
    with pytest.raises(ArtifactError):
        Artifact.from_bytes(_with_header(header))


def test_load_refuses_an_artifact_for_features_the_host_lacks(artifact, monkeypatch):
    vnni = dataclasses.replace(artifact, target="cpu{features=avx512_vnni threads=1}")
    monkeypatch.setattr(host, "has", lambda feature: feature != "avx512_vnni")
    for load in (Target.cpu(**PORTABLE).load, qmlir.target.load):
        with pytest.raises(TargetError, match=r"compiled for cpu\{features=avx512_vnni threads=1\}; "
                                              r"this CPU lacks avx512_vnni"):
            load(vnni)


def test_cpu_load_refuses_a_cuda_artifact(artifact):
    cuda = dataclasses.replace(artifact, kind="cuda", target="cuda{chip=sm_80 features=+ptx80 format=isa "
                                                              "block-size=256 opt-level=3}")
    with pytest.raises(TargetError, match="a cuda artifact .* cannot be loaded on the CPU"):
        Target.cpu(**PORTABLE).load(cuda)


# The code fingerprint, derived from imports

def test_fingerprint_closure_reaches_kernels_and_ir():
    roots = target_compile.fingerprint_modules(Target.cpu(**PORTABLE))
    assert {"qmlir.target.compile", "qmlir.target.base", "qmlir.passes.select_kernels",
            "qmlir.passes.expand_kernels", "qmlir.passes.loop_outlining"} <= roots
    closure = target_compile.import_closure(roots)
    for module in ("qmlir.ir.builders", "qmlir.kernels.portable", "qmlir.kernels.bf16_dot",
                   "qmlir.kernels.int8_vnni", "qmlir.kernels.base", "qmlir.passes.pipelines",
                   "qmlir.passes.pipeline", "qmlir.runtime.artifact", "qmlir.errors"):
        assert module in closure, module
    # nothing of the compiler imports the tools or the model zoo
    assert not {"qmlir.tools.opt", "qmlir.zoo"} & closure


def test_fingerprint_changes_when_a_module_in_the_closure_changes(monkeypatch, tmp_path):
    roots = target_compile.fingerprint_modules(Target.cpu(**PORTABLE))
    target_compile.code_fingerprint.cache_clear()
    before = target_compile.code_fingerprint(roots)
    assert target_compile.code_fingerprint(roots) == before  # deterministic

    real = target_compile._module_file
    for changed in ("qmlir.kernels.bf16_dot", "qmlir.ir.builders"):
        edited = tmp_path / f"{changed}.py"
        edited.write_text(real(changed).read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")

        def module_file(name: str, _changed=changed, _edited=edited):
            return _edited if name == _changed else real(name)

        monkeypatch.setattr(target_compile, "_module_file", module_file)
        target_compile.code_fingerprint.cache_clear()
        try:
            assert target_compile.code_fingerprint(roots) != before, changed
        finally:
            monkeypatch.setattr(target_compile, "_module_file", real)
            target_compile.code_fingerprint.cache_clear()
    assert target_compile.code_fingerprint(roots) == before


def test_fingerprint_ignores_a_module_outside_the_closure(monkeypatch, tmp_path):
    roots = target_compile.fingerprint_modules(Target.cpu(**PORTABLE))
    target_compile.code_fingerprint.cache_clear()
    before = target_compile.code_fingerprint(roots)
    real = target_compile._module_file
    edited = tmp_path / "zoo.py"
    edited.write_text(Path(real("qmlir.zoo")).read_text(encoding="utf-8") + "\n# edited\n")
    monkeypatch.setattr(target_compile, "_module_file",
                        lambda name: edited if name == "qmlir.zoo" else real(name))
    target_compile.code_fingerprint.cache_clear()
    try:
        assert target_compile.code_fingerprint(roots) == before
    finally:
        monkeypatch.setattr(target_compile, "_module_file", real)
        target_compile.code_fingerprint.cache_clear()


def test_truncated_module_bytes_are_an_artifact_error(artifact):
    with pytest.raises(ArtifactError, match="truncated"):
        Artifact.from_bytes(artifact.to_bytes()[:-200])


def test_a_single_threaded_artifact_needs_no_async_runtime(artifact):
    assert "async_runtime" not in artifact.libraries


def test_a_damaged_module_is_an_artifact_error(artifact):
    data = bytearray(artifact.to_bytes())
    data[-10] ^= 0xFF  # same length, one byte of the module flipped
    with pytest.raises(ArtifactError, match="checksum"):
        Artifact.from_bytes(bytes(data))
