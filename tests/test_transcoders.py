"""Transcoders as dictionaries: each kind's formulas, the set's accessors against them, scale folding,
files (glasslab's and SAELens's), and one-line errors for wrong layers and widths."""

from __future__ import annotations

import pytest
import torch

from glasslab.dictionaries import SAE, DictionaryConfig, StepInput, Transcoder, dictionary_class
from glasslab.dictionaries.files import load_dictionary_folder, load_sae_folder, save_sae
from glasslab.dictionaries.sae_config import SAEConfig
from glasslab.dictionaries.train import TrainConfig
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.dictionaries.transcoder_train import TranscoderTrainConfig
from glasslab.errors import InputError
from glasslab.store import MANIFEST
from tests.tiny import tiny_model

D_IN, D_SAE, D_OUT = 8, 24, 6
KINDS = (
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
    "jumprelu_skip_transcoder",
    "topk_transcoder",
    "topk_skip_transcoder",
)


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")


def config(architecture: str, layer: int = 0, **overrides) -> SAEConfig:
    base = dict(
        architecture=architecture,
        d_in=D_IN,
        d_sae=D_SAE,
        hook=f"blocks.{layer}.mlp.in",
        hook_out=f"blocks.{layer}.mlp_out",
        d_out=D_OUT,
        k=5 if dictionary_class(architecture).uses_k else None,
        apply_b_dec_to_input=False,
        model_name="tiny-gpt2",
    )
    return SAEConfig(**{**base, **overrides})


def random_transcoder(architecture: str, seed: int = 0, layer: int = 0, **overrides) -> Transcoder:
    transcoder = dictionary_class(architecture)(config(architecture, layer, **overrides))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in transcoder.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
        if "threshold" in dict(transcoder.named_parameters()):
            transcoder.threshold.copy_(torch.rand(D_SAE, generator=generator))
    return transcoder


def by_hand(transcoder: Transcoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, prediction) written out from each kind's definition."""
    pre = x @ transcoder.W_enc + transcoder.b_enc
    if transcoder.architecture.startswith("topk"):
        top = pre.topk(transcoder.cfg.k, dim=-1)
        features = torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))
    elif transcoder.architecture.startswith("jumprelu"):
        features = torch.where(pre > transcoder.threshold, pre, 0.0)
    else:
        features = pre.clamp_min(0)
    prediction = features @ transcoder.W_dec + transcoder.b_dec
    if "skip" in transcoder.architecture:
        prediction = prediction + x @ transcoder.W_skip.T  # SAELens's orientation: [d_out, d_in]
    return features, prediction


@pytest.mark.parametrize("architecture", KINDS)
def test_each_kind_encodes_and_predicts_by_its_definition(architecture):
    transcoder = random_transcoder(architecture)
    x = torch.randn(2, 7, D_IN, generator=torch.Generator().manual_seed(1))
    features, prediction = by_hand(transcoder, x)
    torch.testing.assert_close(transcoder.encode(x), features)
    torch.testing.assert_close(transcoder(x), prediction)
    assert transcoder.W_dec.shape == (D_SAE, D_OUT) and transcoder.b_dec.shape == (D_OUT,)
    assert (transcoder.skip_matrix is not None) == ("skip" in architecture)


@pytest.mark.parametrize("architecture", KINDS)
def test_the_sets_accessors_reproduce_encode_and_the_prediction(architecture):
    layers = {layer: random_transcoder(architecture, seed=layer, layer=layer) for layer in (0, 1)}
    transcoders = TranscoderSet(layers, n_layers=2, model_name="tiny-gpt2")
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(2))
    for layer in (0, 1):
        weights, bias = transcoders.encoder(layer)
        pre = x @ weights + bias
        torch.testing.assert_close(transcoders.encode(layer, x), layers[layer].activation(pre))
        acts = {source: transcoders.encode(source, x) for source in (0, 1)}
        torch.testing.assert_close(transcoders.reconstruct(layer, acts, x), layers[layer](x))
        assert transcoders.decoder(layer, 1 - layer) is None
        assert transcoders.input_hook(layer) == f"blocks.{layer}.mlp.in"
        assert transcoders.output_hook(layer) == f"blocks.{layer}.mlp_out"
        assert transcoders.d_sae(layer) == D_SAE and transcoders.output_bias(layer).shape == (D_OUT,)
        skip = transcoders.skip(layer)
        assert skip is None if "skip" not in architecture else skip.shape == (D_IN, D_OUT)
    assert transcoders.layers == [0, 1] and transcoders.n_layers == 2


@pytest.mark.parametrize("architecture", ["topk_skip_transcoder", "jumprelu_skip_transcoder", "transcoder"])
def test_finishing_folds_the_input_and_the_target_scale(architecture):
    """Trained on a x to predict c y: the finished transcoder predicts y from x, with the same features / c."""
    transcoder = dictionary_class(architecture)(config(architecture))
    plan = TranscoderTrainConfig(architecture=architecture, k=5)
    transcoder.start_training(torch.Generator().manual_seed(0), plan)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in transcoder.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))
        transcoder.after_optimizer_step()  # decoder rows back on the unit sphere
    a, c = 0.37, 2.9
    x = torch.randn(9, D_IN, generator=generator)
    with torch.no_grad():
        trained_features = transcoder.encode(a * x)
        trained_prediction = transcoder(a * x)
    transcoder.finish_training(a, c)
    torch.testing.assert_close(transcoder.encode(x), trained_features / c)
    torch.testing.assert_close(transcoder(x), trained_prediction / c)
    torch.testing.assert_close(transcoder.W_dec.norm(dim=-1), torch.ones(D_SAE))
    assert not any(p.requires_grad for p in transcoder.parameters())


def test_the_loss_is_the_squared_error_against_the_target():
    transcoder = random_transcoder("topk_skip_transcoder")
    transcoder.requires_grad_(True)
    x, y = torch.randn(4, D_IN), torch.randn(4, D_OUT)
    batch = StepInput(x, torch.zeros(D_SAE, dtype=torch.bool), TranscoderTrainConfig(), y)
    out = transcoder.loss(batch)
    torch.testing.assert_close(out.reconstruction, (y - transcoder(x)).pow(2).sum(-1).mean())
    with pytest.raises(InputError, match="pairs"):
        transcoder.loss(StepInput(x, batch.dead, batch.settings))


def test_autoencoder_configs_and_files_are_unchanged():
    cfg = DictionaryConfig("topk", 8, 32, "blocks.0.resid_post", k=4)
    assert cfg.hook_out is None and cfg.d_out is None and cfg.out_width == 8
    data = SAEConfig("topk", 8, 32, "blocks.0.resid_post", k=4).to_json()
    assert "d_out" not in data and "hook_name_out" not in data["metadata"]
    assert TrainConfig(hook="blocks.0.resid_post").architecture == "topk"
    with pytest.raises(InputError, match="SAEs, not 'topk_transcoder'"):
        TrainConfig(hook="blocks.0.resid_post", architecture="topk_transcoder")


def test_a_transcoder_config_round_trips_through_cfg_json():
    cfg = config("jumprelu_skip_transcoder", layer=2)
    data = cfg.to_json()
    assert data["d_out"] == D_OUT and data["apply_b_dec_to_input"] is False
    assert data["metadata"]["hook_name"] == "blocks.2.ln2.hook_normalized"
    assert data["metadata"]["hook_name_out"] == "blocks.2.hook_mlp_out"
    again = SAEConfig.from_json(data)
    assert (again.hook, again.hook_out, again.d_out, again.extra) == (cfg.hook, cfg.hook_out, D_OUT, {})


def test_bad_configs_and_inputs_get_one_line_errors():
    with pytest.raises(InputError, match="apply_b_dec_to_input=False") as caught:
        config("transcoder", apply_b_dec_to_input=True)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="needs k"):
        config("topk_transcoder", k=None)
    with pytest.raises(InputError, match="no input normalisation, not 'layer_norm'"):
        config("transcoder", normalize_activations="layer_norm")
    assert config("transcoder", normalize_activations="expected_average_only_in").d_out == D_OUT
    with pytest.raises(InputError, match="d_out must be a positive"):
        config("transcoder", d_out=0)
    transcoders = TranscoderSet({0: random_transcoder("topk_transcoder")}, n_layers=3)
    for call in (
        lambda: transcoders.encode(1, torch.zeros(D_IN)),
        lambda: transcoders.encode("0", torch.zeros(D_IN)),
        lambda: transcoders.decoder(0, 5),
        lambda: transcoders.encode(0, torch.zeros(D_IN + 1)),
        lambda: transcoders.reconstruct(0, {0: torch.zeros(D_SAE - 1)}, torch.zeros(D_IN)),
        lambda: TranscoderSet({4: random_transcoder("transcoder", layer=4)}, n_layers=3),
        lambda: TranscoderSet({}, n_layers=3),
    ):
        with pytest.raises(InputError) as caught:
            call()
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="no transcoder for layer 1; this set has layers 0"):
        transcoders.skip(1)
    with pytest.raises(InputError, match=r"must be 8 wide .*got 7"):
        transcoders.encode(0, torch.zeros(3, 7))


def test_an_sae_loader_refuses_a_transcoder_folder_in_one_line(tmp_path):
    save_sae(random_transcoder("transcoder"), tmp_path / "tc")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'transcoder' dictionary, not an SAE"):
        load_sae_folder(tmp_path / "tc")
    loaded = load_dictionary_folder(tmp_path / "tc", kind=Transcoder)
    assert not isinstance(loaded, SAE) and loaded.cfg.hook_out == "blocks.0.mlp_out"


def test_a_set_saves_to_the_store_and_loads_back_checked_against_the_model(tmp_path):
    model = tiny_model("gpt2")  # 3 layers of width 32
    d = model.d_model
    layers = {
        layer: random_transcoder("topk_skip_transcoder", seed=layer, layer=layer, d_in=d, d_out=d)
        for layer in range(model.n_layers)
    }
    transcoders = TranscoderSet(layers, n_layers=model.n_layers, model_name=model.name)
    folder = transcoders.save("mine", model.key, extra_files={"training.json": b"{}"})
    assert (folder / MANIFEST).is_file() and (folder / "layer-2" / "cfg.json").is_file()
    loaded = TranscoderSet.load("mine", model)
    assert loaded.layers == [0, 1, 2] and loaded.model_name == model.name
    x = torch.randn(3, d)
    for layer in loaded.layers:
        torch.testing.assert_close(loaded[layer](x), layers[layer](x))
    assert TranscoderSet.load(folder).n_layers == 3  # a folder needs no model
    with pytest.raises(InputError, match="pass the model"):
        TranscoderSet.load("mine")
    with pytest.raises(InputError, match="no transcoder set 'other'"):
        TranscoderSet.load("other", model)
    with pytest.raises(InputError, match="4-layer model"):
        TranscoderSet(layers, n_layers=4, model_name=model.name).check_fits(model)
    narrow = {0: random_transcoder("transcoder", layer=0)}
    with pytest.raises(InputError, match="made for another model"):
        TranscoderSet(narrow, n_layers=3).check_fits(model)
    (folder / "layer-1" / "sae_weights.safetensors").write_bytes(b"truncated")
    with pytest.raises(InputError):
        TranscoderSet.load("mine", model)


def test_a_saved_jumprelu_skip_transcoder_reads_the_same_in_sae_lens(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    transcoder = random_transcoder("jumprelu_skip_transcoder")
    save_sae(transcoder, tmp_path / "tc")  # type: ignore[arg-type]
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "tc"), device="cpu")
    x = torch.randn(6, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), transcoder.encode(x))
        torch.testing.assert_close(theirs(x), transcoder(x))
