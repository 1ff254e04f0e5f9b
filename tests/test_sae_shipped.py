"""Automatic labels and packaging on a tiny model; the SAEs shipped for the offline default model load,
fit its hooks, keep their measured quality on held-out text, and label every live feature."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glasslab.data import load_corpus
from glasslab.dictionaries.activations import ActivationStream
from glasslab.dictionaries.labels_file import read_labels
from glasslab.dictionaries.train import TrainConfig
from glasslab.methods.features.evaluate import evaluate_sae
from glasslab.methods.features.labels import auto_labels, package_sae
from glasslab.methods.features.training import train_sae
from glasslab.sae import load_sae_folder
from tests.tiny import WORDS, tiny_model

SHIPPED_ROOT = Path(__file__).parents[1] / "src" / "glasslab" / "sae" / "shipped"
SHIPPED = sorted(p for p in SHIPPED_ROOT.glob("*") if (p / "cfg.json").is_file()) if SHIPPED_ROOT.is_dir() else []
# Quality target of the SAE issue, and how far a held-out evaluation with few loss tokens may fall below it.
TARGET = {"fve": 0.90, "loss_recovered_mean": 0.92}
TOLERANCE = {"fve": 0.02, "loss_recovered_mean": 0.04}
OUTSIDE_FVE = 0.94  # on English kept out of the training corpus (english-outside)


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ship")
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(150)]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    model = tiny_model("llama")
    cfg = TrainConfig(
        hook="blocks.1.resid_post", expansion=2, k=4, tokens=10 * 256, batch_size=256, seq_len=16,
        corpus=str(root / "corpus.jsonl"), lr=3e-3,
    )  # fmt: skip
    result = train_sae(model, cfg, out=root / "trained", evaluate_tokens=0, checkpoint_every=0)
    return model, result.path, root


def test_every_feature_that_fires_gets_an_automatic_label(tiny_trained):
    model, folder, root = tiny_trained
    sae = load_sae_folder(folder)
    labels = auto_labels(model, sae, corpus=str(root / "corpus.jsonl"), sequences=40, seq_len=16)
    from glasslab.methods.features.scan import scan_features

    scan = scan_features(model, sae, None, corpus=str(root / "corpus.jsonl"), split="train", sequences=40, seq_len=16)
    fired = set((scan.fired > 0).nonzero().reshape(-1).tolist())
    assert fired and set(labels) == fired
    for feature, entry in labels.items():
        prefix = f"{entry.extra['concept']}: " if "concept" in entry.extra else ""
        assert entry.source == "auto" and entry.label.startswith(f"{prefix}fires on ")
        assert entry.extra["density"] == pytest.approx(float(scan.fired[feature]) / scan.tokens)
        assert entry.extra["fires_on"][0] in entry.label


def test_packaging_writes_half_precision_weights_training_record_and_labels(tiny_trained, tmp_path):
    model, folder, _ = tiny_trained
    target = package_sae(model, folder, tmp_path / "shipped" / "tiny", sequences=40)
    cfg = json.loads((target / "cfg.json").read_text())
    assert cfg["dtype"] == "float16"
    original, shipped = load_sae_folder(folder), load_sae_folder(target)
    torch.testing.assert_close(shipped.W_dec, original.W_dec, rtol=1e-3, atol=1e-3)
    labels = read_labels(target, shipped.d_sae)
    assert json.loads((target / "training.json").read_text())["steps"] == 10
    trained_live = set((_training_density(target) > 0).nonzero().reshape(-1).tolist())
    assert trained_live and trained_live <= set(labels)  # every feature live in training is labelled


def _training_density(folder: Path) -> torch.Tensor:
    log10 = load_file(folder / "sparsity.safetensors")["sparsity"].double()
    return torch.where(log10 > -10, 10**log10, 0.0)


# -- the shipped SAEs on the real offline model ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no SAEs are shipped yet (docs/sae.md: shipped SAEs)")
@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_sae_loads_fits_keeps_its_quality_and_labels_every_live_feature(default_model, folder):
    from glasslab.dictionaries.loading import load_sae

    sae = load_sae(f"default:{folder.name}", default_model)
    assert sae.cfg.model_name and default_model.hook_spec(sae.hook).site == "resid_post"
    record = json.loads((folder / "training.json").read_text())
    density = _training_density(folder)
    assert float((density == 0).double().mean()) < 0.10  # dead in training
    labels = read_labels(folder, sae.d_sae)
    live = set((density > 0).nonzero().reshape(-1).tolist())
    assert live <= set(labels) and all(labels[f].source == "auto" for f in live)
    # The whole test split for the activation figures (dead = never active there), a short loss check.
    held_out = evaluate_sae(default_model, sae, tokens=32768, loss_tokens=512)
    assert held_out.dead_fraction < 0.10, (held_out.dead_fraction, record["evaluation"]["dead_fraction"])
    held_out_live = set()
    stream = ActivationStream(default_model, sae.hook, load_corpus("builtin", split="test"), max_rows=2048)
    with torch.inference_mode():
        for rows in stream.rows():
            held_out_live |= set((sae.encode(rows) > 0).any(0).nonzero().reshape(-1).tolist())
    assert held_out_live <= set(labels)
    for key, target in TARGET.items():
        value = getattr(held_out, key)
        assert value >= target - TOLERANCE[key], (key, value, record["evaluation"][key])
    # Trained on English, and explaining English it never saw (docs/sae.md: 65,536 tokens; fewer here).
    assert record["config"]["corpus"] == "english"
    outside = evaluate_sae(
        default_model, sae, documents=list(load_corpus("english-outside")), tokens=16384, loss_tokens=1
    )
    assert outside.fve >= OUTSIDE_FVE - TOLERANCE["fve"] / 2, outside.fve


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no SAEs are shipped yet (docs/sae.md: shipped SAEs)")
@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_sae_has_every_dashboard_precomputed_and_its_labels_scored(default_model, folder):
    from glasslab.dictionaries.loading import load_sae
    from glasslab.methods.features.atlas import atlas_of

    sae = load_sae(f"default:{folder.name}", default_model)
    atlas = atlas_of(sae)
    assert atlas is not None and atlas.corpus == "english (train split)" and atlas.sequences == 1024
    labels = read_labels(folder, sae.d_sae)
    assert set(atlas.features) <= set(labels)  # every feature that fired in the scan is labelled...
    scored = [f for f in atlas.features if "detection" in labels[f].extra]
    assert len(scored) == len(atlas.features)  # ...and its label scored on held-out text
    assert all(labels[f].extra["detection"]["corpus"] == "english (test split)" for f in scored)
    named = sum("concept" in labels[f].extra for f in atlas.features)
    assert named >= 10, named  # labels were built with WordNet at hand: some name a class
