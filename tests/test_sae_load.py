"""Loading SAEs by every name (folder, hub repo, release/id, Gemma Scope's raw files, default:, store:,
sae_lens objects), the checks against a model, discovery, and the labels file."""

from __future__ import annotations

import json
import re

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import glasslab as gl
from glasslab.dictionaries import loading as sae_loading
from glasslab.dictionaries.catalog import available_saes
from glasslab.dictionaries.hub import from_gemma_scope, from_sae_lens, same_model
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json, read_labels, write_labels
from glasslab.dictionaries.loading import load_sae
from glasslab.errors import InputError
from glasslab.sae import SAE, SAEConfig, save_sae
from glasslab.store import store_path
from tests.test_sae_splice import random_sae
from tests.tiny import tiny_hf, tiny_model, word_tokenizer

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline; returns a function that puts files in it as a download would."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def put(repo: str, folder: str) -> object:
        repo_dir = cache / f"models--{repo.replace('/', '--')}"
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(COMMIT)
        target = repo_dir / "snapshots" / COMMIT / folder
        target.mkdir(parents=True, exist_ok=True)
        return target

    return put


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sae_loading, "SHIPPED_ROOT", tmp_path / "shipped")
    return tmp_path


def named_model(name: str) -> gl.Model:
    from glasslab.model.architectures import architecture_for

    hf = tiny_hf("gpt2")
    return gl.Model(hf, word_tokenizer(), architecture_for(hf.config.model_type), name=name)


def test_folder_loads_and_is_checked_against_the_model(tmp_path):
    model = tiny_model("gpt2")
    sae = random_sae(model)
    folder = save_sae(sae, tmp_path / "mine")
    loaded = load_sae(str(folder), model)
    assert torch.equal(loaded.W_enc, sae.W_enc) and loaded.origin.folder == folder.resolve()
    with pytest.raises(InputError, match=re.escape("reads 'blocks.1.resid_post', not 'blocks.2.resid_post'")):
        load_sae(str(folder), model, hook="blocks.2.resid_post")
    with pytest.raises(InputError, match="trained on tiny-gpt2, not tiny-llama"):
        load_sae(str(folder), tiny_model("llama"))
    other = SAE(SAEConfig("standard", 32, 8, "blocks.1.resid_post", model_name="tiny-llama"))
    assert load_sae(other, model, allow_other_model=True) is other
    wide = SAE(SAEConfig("standard", 48, 8, "blocks.1.resid_post"))
    with pytest.raises(InputError, match="made for another model"):
        load_sae(wide, model)
    deep = SAE(SAEConfig("standard", 32, 8, "blocks.9.resid_post"))
    with pytest.raises(InputError, match="layer 9"):
        load_sae(deep, model)
    for missing in ("./nowhere", str(tmp_path / "nowhere")):
        with pytest.raises(InputError, match="does not exist"):
            load_sae(missing)


def test_model_names_compare_loosely():
    assert same_model("google/gemma-3-270m", "gemma-3-270m")
    assert same_model("gpt2-small", "openai-community/gpt2") and same_model("gpt2", "GPT2-small")
    assert not same_model("gemma-3-270m", "gemma-3-270m-it")


def test_hub_repo_in_the_saelens_layout_loads_from_the_cache_offline(hub):
    model = tiny_model("gpt2")
    sae = random_sae(model)
    save_sae(sae, hub("someone/tiny-saes", "layer1"))
    for name in ("someone/tiny-saes/layer1", "hf://someone/tiny-saes/layer1"):
        loaded = load_sae(name, model)
        assert torch.equal(loaded.W_dec, sae.W_dec)
    with pytest.raises(InputError) as info:
        load_sae("someone/other-saes/layer1")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "hf download someone/other-saes --include 'layer1/*'" in message
    assert "\n" not in message


def test_gpt2_small_res_jb_by_release_and_id(hub):
    folder = hub("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre")
    cfg = {
        "model_name": "gpt2-small",
        "hook_point": "blocks.8.hook_resid_pre",
        "d_in": 32,
        "d_sae": 64,
        "dtype": "torch.float32",
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(random_sae(tiny_model("gpt2")).state_dict(), folder / "sae_weights.safetensors")
    sae = load_sae("gpt2-small-res-jb/blocks.8.hook_resid_pre")
    assert (sae.hook, sae.cfg.neuronpedia_id) == ("blocks.8.resid_pre", "gpt2-small/8-res-jb")
    assert load_sae("gpt2-small-res-jb", sae_id="blocks.8.hook_resid_pre").origin.release == "gpt2-small-res-jb"
    with pytest.raises(
        InputError, match=re.escape("name one SAE of gpt2-small-res-jb, e.g. gpt2-small-res-jb/blocks.0")
    ):
        load_sae("gpt2-small-res-jb")
    with pytest.raises(InputError, match="not an SAE id of gpt2-small-res-jb"):
        load_sae("gpt2-small-res-jb/blocks.12.hook_resid_pre")
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        load_sae("gpt2-small-res-jb/blocks.3.hook_resid_pre")


def fake_gemma_scope(d_in: int = 8, d_sae: int = 16, upper: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    names = ("W_enc", "W_dec") if upper else ("w_enc", "w_dec")
    return {
        names[0]: rng.normal(size=(d_in, d_sae)).astype(np.float32),
        names[1]: rng.normal(size=(d_sae, d_in)).astype(np.float32),
        "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.1,
        "b_dec": rng.normal(size=d_in).astype(np.float32),
        "threshold": rng.uniform(0, 0.5, size=d_sae).astype(np.float32),
    }


def test_gemma_scope_npz_converts_to_the_jumprelu_formula(hub):
    params = fake_gemma_scope()
    folder = hub("google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_59")
    np.savez(folder / "params.npz", **params)
    sae = load_sae("gemma-scope-2b-pt-res-canonical/layer_3/width_16k/canonical")
    assert (sae.cfg.architecture, sae.hook, sae.d_in, sae.d_sae) == ("jumprelu", "blocks.3.resid_post", 8, 16)
    assert sae.cfg.neuronpedia_id == "gemma-2-2b/3-gemmascope-res-16k" and sae.cfg.model_name == "gemma-2-2b"
    x = torch.randn(5, 8)
    pre = x @ torch.from_numpy(params["W_enc"]) + torch.from_numpy(params["b_enc"])  # raw input: no b_dec first
    expected = pre * (pre > torch.from_numpy(params["threshold"]))
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(
        sae.decode(expected), expected @ torch.from_numpy(params["W_dec"]) + torch.from_numpy(params["b_dec"])
    )
    same = load_sae("gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_59")
    assert torch.equal(same.W_enc, sae.W_enc) and same.cfg.neuronpedia_id is None


def test_gemma_scope_2_safetensors_and_damaged_files(hub, tmp_path):
    params = {k: torch.from_numpy(v) for k, v in fake_gemma_scope(upper=False).items()}
    save_file(
        params, hub("google/gemma-scope-2-270m-pt", "resid_post/layer_5_width_16k_l0_medium") / "params.safetensors"
    )
    sae = load_sae("gemma-scope-2-270m-pt-res/layer_5_width_16k_l0_medium")
    assert sae.cfg.neuronpedia_id == "gemma-3-270m/5-gemmascope-2-res-16k" and sae.hook == "blocks.5.resid_post"
    assert torch.equal(sae.W_enc, params["w_enc"])

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, W_enc=np.array([object()], dtype=object))
    with pytest.raises(InputError, match=re.escape("not a readable .npz")):
        from_gemma_scope(pickled, hook="blocks.0.resid_post")
    partial = tmp_path / "partial.npz"
    np.savez(partial, W_enc=np.zeros((4, 8), np.float32))
    with pytest.raises(InputError, match="lacks W_dec, b_enc, b_dec, threshold"):
        from_gemma_scope(partial, hook="blocks.0.resid_post")
    bad = {**fake_gemma_scope(), "b_dec": np.zeros(3, np.float32)}
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(InputError, match="b_dec has shape"):
        from_gemma_scope(tmp_path / "bad.npz", hook="blocks.0.resid_post")


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_from_sae_lens_keeps_the_weights_and_the_formula(architecture):
    sae_lens = pytest.importorskip("sae_lens")
    classes = {
        "standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
        "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 3}),
        "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
    }
    cls, config, extra = classes[architecture]
    theirs = cls(config(d_in=16, d_sae=40, **extra))
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
        if architecture == "jumprelu":
            theirs.threshold.copy_(torch.rand(40) * 0.2)
    with pytest.raises(InputError, match="does not record its hook"):
        from_sae_lens(theirs)
    ours = from_sae_lens(theirs, hook="blocks.1.hook_resid_pre")
    assert ours.hook == "blocks.1.resid_pre" and ours.cfg.architecture == architecture
    x = torch.randn(6, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x))
        torch.testing.assert_close(ours(x), theirs.decode(theirs.encode(x)))


def test_shipped_and_store_saes_by_short_name_and_discovery(store):
    model = tiny_model("gpt2")
    shipped = random_sae(model)
    save_sae(shipped, store / "shipped" / "L1", extra_files={LABELS_FILE: labels_json({3: FeatureLabel("x", "auto")})})
    save_sae(random_sae(tiny_model("llama")), store / "shipped" / "other-model")
    trained = random_sae(model, hook="blocks.2.resid_post", d_sae=32)
    save_sae(trained, store_path("saes", model.key, "mine"))
    for name in ("default:blocks.1.resid_post", "default:1", "default:L1", "shipped:L1"):
        assert torch.equal(load_sae(name, model).W_enc, shipped.W_enc), name
    for name in ("store:mine", "mine"):
        assert load_sae(name, model).d_sae == 32
    with pytest.raises(InputError, match=re.escape("no SAE shipped with glasslab for 'blocks.2.resid_post'")):
        load_sae("default:2", model)
    with pytest.raises(InputError, match="no SAE named 'theirs'"):
        load_sae("store:theirs", model)
    with pytest.raises(InputError, match="not an SAE folder, a release"):
        load_sae("theirs", model)
    known = {k.name: k for k in available_saes(model)}
    assert set(known) == {"default:L1", "store:mine"}
    assert known["default:L1"].labels and known["default:L1"].source == "shipped" and known["store:mine"].on_disk


def test_discovery_lists_hub_releases_for_the_models_name(store, hub):
    model = named_model("openai-community/gpt2")  # three layers: only blocks 0..2 exist
    known = [k for k in available_saes(model) if k.source == "hub"]
    assert [k.name for k in known] == [f"gpt2-small-res-jb/blocks.{layer}.hook_resid_pre" for layer in range(3)]
    assert known[0].neuronpedia == "gpt2-small/0-res-jb" and not any(k.on_disk for k in known)
    folder = hub("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.1.hook_resid_pre")
    (folder / "sae_weights.safetensors").write_bytes(b"")
    assert [k.on_disk for k in available_saes(model)] == [False, True, False]
    assert available_saes(tiny_model("llama")) == []


def test_labels_file_round_trip_and_errors(tmp_path):
    labels = {7: FeatureLabel("closing brackets", "auto", {"density": 0.01}), 2: FeatureLabel("Paris", "user")}
    write_labels(tmp_path, labels, generated_by="test")
    document = json.loads((tmp_path / LABELS_FILE).read_text())
    assert document["format"] == 1 and list(document["features"]) == ["2", "7"]
    assert read_labels(tmp_path, d_sae=8) == labels
    assert read_labels(tmp_path / "none") == {}
    with pytest.raises(InputError, match=re.escape("features 0..4")):
        read_labels(tmp_path, d_sae=5)
    for text, message in [
        ("{oops", "not valid JSON"),
        ('{"features": {}}', "not a glasslab labels file"),
        ('{"format": 1, "features": {"a": {}}}', "not a feature index"),
        ('{"format": 1, "features": {"1": {"label": 3}}}', "string 'label' and 'source'"),
    ]:
        (tmp_path / LABELS_FILE).write_text(text)
        with pytest.raises(InputError, match=message):
            read_labels(tmp_path)
    with pytest.raises(InputError, match="non-empty"):
        labels_json({1: FeatureLabel(" ", "auto")})
