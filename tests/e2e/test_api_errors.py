"""The Python API's bad inputs raise qmlir's typed errors with a message that says what to do."""
import pytest
import torch

import qmlir
from qmlir.quantization import QuantConfig, QuantConfigError


def test_unknown_config_key():
    with pytest.raises(QuantConfigError, match="unknown key.*bogus.*known keys"):
        QuantConfig(bogus=1)


def test_yaml_sources(tmp_path):
    with pytest.raises(QuantConfigError, match="cannot read"):
        QuantConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(QuantConfigError, match="cannot read"):
        QuantConfig.from_yaml(str(tmp_path / "missing.yaml"))
    with pytest.raises(QuantConfigError, match="is a directory"):
        QuantConfig.from_yaml(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"weight_dtype: int8 # caf\xe9\n")
    with pytest.raises(QuantConfigError, match="not UTF-8"):
        QuantConfig.from_yaml(bad)
    good = tmp_path / "ok.yaml"
    good.write_text("weight_dtype: int4\nweight_granularity: group\ngroup_size: 32\n")
    assert QuantConfig.from_yaml(good).group_size == 32


def test_save_quantized_into_a_missing_directory(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 8))
    q = qmlir.quantize(model, None, "int8-weight-only", progress=False)
    with pytest.raises(qmlir.QuantizationError, match="does not exist"):
        qmlir.save_quantized(q, tmp_path / "no" / "such" / "dir" / "m.safetensors")
    path = qmlir.save_quantized(q, tmp_path / "m.safetensors")
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("preset", ["int8-weight-only", "w8a8-static", "int4-g128", "bf16"])
def test_quantize_a_bare_linear(preset):
    """A model that is itself an nn.Linear is quantized (the result is the quantized layer)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 32)
    x = torch.randn(4, 128)
    q = qmlir.quantize(lin, [x], preset, progress=False)
    assert q is not lin and isinstance(lin, torch.nn.Linear)  # the original is untouched
    err = (q(x) - lin(x)).abs().max() / lin(x).abs().max()
    assert err < (0.1 if preset == "int4-g128" else 0.02)


@pytest.mark.parametrize("bad,match", [
    ([], "calibration data is empty"),
    ([torch.full((4, 64), float("nan"))], "(?i)nan"),  # calibrated modes: the layer it reaches is named
    ([torch.randn(4, 64) * float("inf")], "(?i)inf"),
    (["some text"], "batch 0 is a str"),
    (5, "must be an iterable of model inputs"),
])
@pytest.mark.parametrize("preset", ["int8-weight-only", "w8a8-static"])
def test_bad_calibration_data_is_a_calibration_error(bad, match, preset):
    from qmlir.quantization import CalibrationError
    model = torch.nn.Sequential(torch.nn.Linear(64, 32))
    with pytest.raises(CalibrationError, match=match):
        qmlir.quantize(model, bad, preset, progress=False)


@pytest.mark.parametrize("bad,match", [
    ([torch.randn(4, 3)], "batch 0: the model rejected it \\(RuntimeError"),
    ([{"y": torch.randn(4, 64)}], "batch 0: the model rejected it \\(TypeError"),
    ([torch.randn(4, 64), torch.randn(4, 64, dtype=torch.float64)], "batch 1: the model rejected it"),
])
def test_calibration_batches_the_model_rejects(bad, match):
    from qmlir.quantization import CalibrationError
    model = torch.nn.Sequential(torch.nn.Linear(64, 32))
    with pytest.raises(CalibrationError, match=match):
        qmlir.quantize(model, bad, "w8a8-static", progress=False)


def test_group_size_without_group_granularity():
    with pytest.raises(QuantConfigError, match="group_size=64 has no effect with weight_granularity='channel'"):
        QuantConfig(weight_granularity="channel", group_size=64)
    assert QuantConfig(weight_granularity="group", group_size=64).group_size == 64


def test_many_qmlir_compiles_of_one_class():
    """Dynamo's recompile limit (8 captures of one forward) does not stop a user compiling a
    ninth model of the same class; every compiled model keeps its own weights."""
    torch._dynamo.reset()
    x = torch.randn(2, 8)
    models, compiled = [], []
    for i in range(11):
        torch.manual_seed(i)
        models.append(torch.nn.Linear(8, 4 + i % 3))
        compiled.append(qmlir.compile(models[-1], (x,)))
    for m, cm in zip(models, compiled):
        torch.testing.assert_close(cm(x), m(x).detach(), rtol=1e-5, atol=1e-5)
