"""Naming a transcoder set: ``default`` opens the set shipped for the model, a store name or a folder opens
that set; a model with nothing shipped, or an unknown shipped name, is a one-line error."""

from __future__ import annotations

import pytest
import torch

from glasslab.dictionaries import dictionary_class, transcoder_catalog
from glasslab.dictionaries.sae_config import SAEConfig
from glasslab.dictionaries.transcoder_catalog import open_transcoders, shipped_transcoders
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.errors import InputError
from tests.tiny import tiny_model


def random_set(model, seed: int) -> TranscoderSet:
    generator = torch.Generator().manual_seed(seed)
    by_layer = {}
    for layer in range(model.n_layers):
        cfg = SAEConfig(
            architecture="topk_skip_transcoder",
            d_in=model.d_model,
            d_sae=8,
            k=2,
            hook=f"blocks.{layer}.mlp.in",
            hook_out=f"blocks.{layer}.mlp_out",
            d_out=model.d_model,
            apply_b_dec_to_input=False,
        )
        transcoder = dictionary_class(cfg.architecture)(cfg)
        with torch.no_grad():
            for param in transcoder.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))
        by_layer[layer] = transcoder
    return TranscoderSet(by_layer, n_layers=model.n_layers, model_name=model.name)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    model = tiny_model("llama")
    root = tmp_path / "shipped"
    for name, seed in (("alpha", 0), ("beta", 1)):
        random_set(model, seed).save(root / name, model.key)
    monkeypatch.setattr(transcoder_catalog, "SHIPPED_TRANSCODERS", root)
    return model


def test_default_opens_the_first_set_shipped_for_the_model(shipped):
    assert [name for name, _, _ in shipped_transcoders()] == ["alpha", "beta"]
    first, second = open_transcoders("default", shipped), open_transcoders("default:beta", shipped)
    expected = random_set(shipped, 0)
    assert torch.equal(first.encoder(1)[0], expected.encoder(1)[0])
    assert not torch.equal(second.encoder(1)[0], expected.encoder(1)[0])


def test_a_folder_and_a_store_name_open_that_set(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    random_set(shipped, 2).save("mine", shipped.key)
    assert torch.equal(open_transcoders("mine", shipped).skip(0), random_set(shipped, 2).skip(0))
    folder = tmp_path / "shipped" / "beta"
    assert torch.equal(open_transcoders(str(folder), shipped).skip(0), random_set(shipped, 1).skip(0))


def test_nothing_shipped_or_an_unknown_name_is_one_line(shipped):
    with pytest.raises(InputError, match="no transcoder set 'gamma' is shipped for tiny-llama; shipped: alpha, beta"):
        open_transcoders("default:gamma", shipped)
    with pytest.raises(InputError, match="no transcoder set is shipped for tiny-gpt2; train one"):
        open_transcoders("default", tiny_model("gpt2"))
