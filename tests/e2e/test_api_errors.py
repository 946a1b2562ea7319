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
