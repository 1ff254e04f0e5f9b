"""The SAE core: every architecture against SAELens on the same weights, the file layout both ways,
and one-line errors for damaged files and SAEs made for another model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from glasslab.dictionaries.hook_names import from_transformer_lens, to_transformer_lens
from glasslab.errors import InputError
from glasslab.sae import SAE, SAEConfig, check_fits, load_sae_folder, save_sae
from tests.tiny import tiny_model

D_IN, D_SAE = 16, 48


def random_sae(architecture: str, normalize: str = "none", **cfg) -> SAE:
    config = SAEConfig(
        architecture, D_IN, D_SAE, "blocks.1.resid_post", model_name="tiny", normalize_activations=normalize, **cfg
    )
    sae = SAE(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * (0.3 if name.startswith("W") else 0.1))
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(D_SAE, generator=generator) * 0.2)
    return sae


CASES = [
    ("standard", "none", {}),
    ("topk", "none", {"k": 5}),
    ("topk", "none", {"k": 5, "rescale_acts_by_decoder_norm": True}),
    ("jumprelu", "none", {}),
    ("gated", "none", {}),
    ("standard", "constant_norm_rescale", {}),
    ("standard", "layer_norm", {}),
]


@pytest.mark.parametrize(("architecture", "normalize", "extra"), CASES)
def test_matches_sae_lens_on_the_same_weights(tmp_path, architecture, normalize, extra):
    sae_lens = pytest.importorskip("sae_lens")
    ours = random_sae(architecture, normalize, **extra)
    save_sae(ours, tmp_path / "sae")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))
    x = torch.randn(3, 7, D_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours_features, theirs_features = ours.encode(x), theirs.encode(x)
        torch.testing.assert_close(ours_features, theirs_features, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            ours.decode(ours_features, like=x), theirs.decode(theirs_features), rtol=1e-5, atol=1e-5
        )
    assert (ours_features > 0).any()
    if architecture == "topk":
        assert int((ours_features > 0).sum(-1).max()) <= extra["k"]


@pytest.mark.parametrize(("architecture", "normalize", "extra"), CASES)
def test_round_trip_and_exact_error_term(tmp_path, architecture, normalize, extra):
    sae = random_sae(architecture, normalize, **extra)
    loaded = load_sae_folder(save_sae(sae, tmp_path / "sae"))
    assert loaded.cfg == sae.cfg
    for name, param in sae.named_parameters():
        assert torch.equal(param, getattr(loaded, name)), name
    x = torch.randn(5, D_IN)
    assert torch.allclose(loaded(x) + loaded.error(x), x, atol=1e-6)


def test_reads_the_older_top_level_layout(tmp_path):
    folder = tmp_path / "jb"
    folder.mkdir()
    cfg = {
        "model_name": "gpt2-small",
        "hook_point": "blocks.8.hook_resid_pre",
        "hook_point_layer": 8,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "torch.float32",
        "device": "cuda",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4},
        "apply_b_dec_to_input": False,
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    weights = {
        "W_enc": torch.randn(D_IN, D_SAE),
        "b_enc": torch.zeros(D_SAE),
        "W_dec": torch.randn(D_SAE, D_IN),
        "b_dec": torch.zeros(D_IN),
    }
    save_file(weights, folder / "sae_weights.safetensors")
    sae = load_sae_folder(folder)
    assert (sae.cfg.architecture, sae.cfg.k, sae.hook, sae.cfg.model_name) == (
        "topk",
        4,
        "blocks.8.resid_pre",
        "gpt2-small",
    )
    assert sae.cfg.apply_b_dec_to_input is False
    assert sae.cfg.extra["hook_point_layer"] == 8 and "device" not in sae.cfg.extra


def test_hook_names_translate_both_ways():
    for name in ["embed", "ln_final", "blocks.3.resid_pre", "blocks.3.attn.z", "blocks.0.mlp.post", "blocks.2.mlp_out"]:
        assert from_transformer_lens(to_transformer_lens(name)) == name
    assert to_transformer_lens("blocks.6.resid_post") == "blocks.6.hook_resid_post"
    assert from_transformer_lens("blocks.4.hook_mlp_in") == "blocks.4.resid_mid"
    with pytest.raises(InputError, match="splice"):
        from_transformer_lens("blocks.4.hook_nonsense")


def _broken(tmp_path, mutate) -> str:
    folder = save_sae(random_sae("jumprelu"), tmp_path / "sae")
    mutate(folder)
    return str(folder)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: (f / "sae_weights.safetensors").unlink(), "no sae_weights"),
        (lambda f: (f / "cfg.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "sae_weights.safetensors").write_bytes(b"garbage"), "not a readable safetensors"),
        (lambda f: (f / "cfg.json").write_text(json.dumps({"d_in": 4})), "lacks d_sae, hook_name"),
        (lambda f: save_file({"W_enc": torch.zeros(D_IN, D_SAE)}, f / "sae_weights.safetensors"), "lacks b_enc"),
        (
            lambda f: save_file(
                {
                    "W_enc": torch.zeros(D_IN, 3),
                    "b_enc": torch.zeros(D_SAE),
                    "W_dec": torch.zeros(D_SAE, D_IN),
                    "b_dec": torch.zeros(D_IN),
                    "threshold": torch.zeros(D_SAE),
                },
                f / "sae_weights.safetensors",
            ),
            r"W_enc has shape \[16, 3\]",
        ),
        (
            lambda f: save_file(
                {
                    "W_enc": torch.full((D_IN, D_SAE), float("nan")),
                    "b_enc": torch.zeros(D_SAE),
                    "W_dec": torch.zeros(D_SAE, D_IN),
                    "b_dec": torch.zeros(D_IN),
                    "threshold": torch.zeros(D_SAE),
                },
                f / "sae_weights.safetensors",
            ),
            "NaN",
        ),
    ],
)
def test_damaged_folders_give_one_line_errors(tmp_path, mutate, message):
    with pytest.raises(InputError, match=message) as info:
        load_sae_folder(_broken(tmp_path, mutate))
    assert "\n" not in str(info.value)


def test_unknown_architecture_is_refused():
    with pytest.raises(InputError, match="not supported"):
        SAEConfig("matryoshka", D_IN, D_SAE, "blocks.0.resid_post")


def test_fit_checks_hook_and_width():
    model = tiny_model("gpt2")
    good = SAE(SAEConfig("standard", model.d_model, 8, "blocks.1.resid_post"))
    check_fits(good, model)
    check_fits(SAE(SAEConfig("standard", model.d_mlp, 8, "blocks.0.mlp.post")), model)
    check_fits(SAE(SAEConfig("standard", model.n_heads * model.d_head, 8, "blocks.0.attn.z")), model)
    with pytest.raises(InputError, match="made for another model"):
        check_fits(
            SAE(SAEConfig("standard", model.d_model + 1, 8, "blocks.1.resid_post", model_name="gpt2-small")), model
        )
    with pytest.raises(InputError, match=r"layer 40"):
        check_fits(SAE(SAEConfig("standard", model.d_model, 8, "blocks.40.resid_post")), model)


def test_save_is_atomic_when_interrupted(tmp_path):
    sae = random_sae("standard")
    target = save_sae(sae, tmp_path / "sae")
    before = (target / "sae_weights.safetensors").read_bytes()
    with pytest.raises(InputError):
        save_sae(random_sae("topk", k=3), target, extra_files={"../escape.json": b"{}"})
    assert (target / "sae_weights.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
