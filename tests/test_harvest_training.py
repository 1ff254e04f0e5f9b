"""An SAE or a transcoder set trained from a harvest (``activations=``) is the one trained from the live model on
the same rows, and the model is not run."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

import glasslab as gl
from glasslab.activations import harvest
from glasslab.dictionaries.train import TrainConfig
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.dictionaries.transcoder_train import TranscoderTrainConfig, train_transcoders
from glasslab.methods.features.training import train_sae
from glasslab.sae import load_sae_folder
from tests.tiny import WORDS, tiny_model

HOOK = "blocks.1.resid_post"


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "corpus.jsonl"
    texts = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(120))
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return str(path)


def config(corpus: str, **overrides) -> TrainConfig:
    # 16-token sequences give 15 rows each; shards of 16 sequences hold the live stream's model batches.
    base = dict(hook=HOOK, expansion=4, k=4, tokens=16 * 128, batch_size=128, buffer_tokens=1000, seq_len=16)
    return TrainConfig(**{**base, "corpus": corpus, "harvest_tokens": 1500, "model_batch": 16, **overrides})


def test_an_sae_trained_from_a_harvest_is_the_one_trained_live(model, corpus, tmp_path, monkeypatch):
    url = harvest(model, HOOK, str(tmp_path / "h"), corpus=corpus, tokens=1500, seq_len=16, shard_tokens=240).url
    cfg = config(corpus)
    live = train_sae(model, cfg, out=tmp_path / "live", evaluate_tokens=0, checkpoint_every=0)

    def not_run(*args, **kwargs):
        raise AssertionError("training from a harvest ran the model")

    with monkeypatch.context() as patched:
        patched.setattr(model, "run", not_run)
        stored = train_sae(model, replace(cfg, activations=url), out=tmp_path / "stored", evaluate_tokens=0)
    assert stored.training["tokens_harvested"] == live.training["tokens_harvested"] == 1500
    a, b = load_sae_folder(live.path), load_sae_folder(stored.path)
    for name, param in a.named_parameters():
        torch.testing.assert_close(getattr(b, name), param, rtol=0, atol=1e-4 * float(param.abs().max()))


def test_a_harvest_of_other_text_or_another_model_is_refused(model, corpus, tmp_path):
    url = harvest(model, HOOK, str(tmp_path / "h"), corpus=corpus, tokens=300, seq_len=16).url
    with pytest.raises(gl.InputError, match="pass the same corpus and seq_len"):
        train_sae(model, config(corpus, seq_len=32, activations=url), out=tmp_path / "a", evaluate_tokens=0)
    with pytest.raises(gl.InputError, match="pass the same corpus"):
        train_sae(model, config("builtin", activations=url), out=tmp_path / "b", evaluate_tokens=0)
    with pytest.raises(gl.InputError, match="of model"):
        train_sae(tiny_model("llama"), config(corpus, activations=url), out=tmp_path / "c", evaluate_tokens=0)
    with pytest.raises(gl.InputError, match=r"has no 'blocks\.0\.resid_post'"):
        train_sae(
            model, config(corpus, hook="blocks.0.resid_post", activations=url), out=tmp_path / "d", evaluate_tokens=0
        )


def test_a_transcoder_set_trained_from_a_harvest_is_the_one_trained_live(model, corpus, tmp_path, monkeypatch):
    layers = range(model.n_layers)
    hooks = [hook for layer in layers for hook in (f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp_out")]
    url = harvest(model, hooks, str(tmp_path / "h"), corpus=corpus, tokens=1500, seq_len=16, shard_tokens=240).url
    base = dict(architecture="topk_skip_transcoder", expansion=2, k=4, tokens=8 * 128, batch_size=128)
    cfg = TranscoderTrainConfig(
        **base, buffer_tokens=1000, seq_len=16, corpus=corpus, harvest_tokens=1500, model_batch=16
    )
    live = TranscoderSet.load(train_transcoders(model, cfg, out=tmp_path / "live").path, model)

    def not_run(*args, **kwargs):
        raise AssertionError("training from a harvest ran the model")

    with monkeypatch.context() as patched:
        patched.setattr(model, "run", not_run)
        run = train_transcoders(model, replace(cfg, activations=url), out=tmp_path / "stored")
    stored = TranscoderSet.load(run.path, model)
    assert run.training["tokens_harvested"] == 1500
    for layer in live.layers:
        for name, param in live[layer].named_parameters():
            scale = float(param.abs().max())
            torch.testing.assert_close(getattr(stored[layer], name), param, rtol=0, atol=1e-4 * scale)
    with pytest.raises(gl.InputError, match=r"has no 'blocks\.0\.mlp\.in"):
        only_resid = harvest(model, HOOK, str(tmp_path / "r"), corpus=corpus, tokens=300, seq_len=16).url
        train_transcoders(model, replace(cfg, activations=only_resid), out=tmp_path / "x")
