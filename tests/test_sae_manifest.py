"""Every SAE save goes through the store (atomic, with a manifest), and the files written beside a saved SAE
later (labels, the atlas of dashboards, fetched labels) keep its manifest true: ``verify`` with sha256 passes
after training, after precomputing, after labelling; SAELens's files stay as they were."""

from __future__ import annotations

import random

import pytest

from glasslab.dictionaries.files import CONFIG_FILE, WEIGHTS_FILE
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json, read_labels, write_labels
from glasslab.dictionaries.train import TrainConfig
from glasslab.errors import InputError
from glasslab.methods.features.atlas import ATLAS_FILE
from glasslab.methods.features.labels import precompute_features
from glasslab.methods.features.training import train_sae
from glasslab.sae import load_sae, save_sae, set_feature_label
from glasslab.store import MANIFEST, SAES, DamagedArtifact, read_manifest, replace_files, resolve, verify
from tests.test_sae_splice import random_sae
from tests.tiny import WORDS, tiny_model


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


def test_save_sae_writes_a_manifest_of_sae_lens_files(model, tmp_path):
    labels = {3: FeatureLabel("cats", "auto")}
    folder = save_sae(random_sae(model), tmp_path / "mine", extra_files={LABELS_FILE: labels_json(labels)})
    manifest = verify(folder, SAES, deep=True)
    assert manifest is not None and manifest["kind"] == "sae" and manifest["name"] == "mine"
    assert set(manifest["files"]) == {CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE}
    assert manifest["summary"] == {"hook": "blocks.1.resid_post", "architecture": "standard", "d_sae": 64}
    assert not list(tmp_path.glob(".partial-*"))


def test_rewriting_labels_beside_a_saved_sae_keeps_its_manifest_true(model, tmp_path):
    folder = save_sae(random_sae(model), tmp_path / "mine", extra_files={LABELS_FILE: labels_json({})})
    write_labels(folder, {1: FeatureLabel("a much longer label than before", "neuronpedia")})
    manifest = verify(folder, SAES, deep=True)
    assert manifest is not None and manifest["files"][LABELS_FILE]["bytes"] == (folder / LABELS_FILE).stat().st_size
    assert read_labels(folder)[1].label == "a much longer label than before"
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE, MANIFEST])


def test_an_sae_verifies_after_training_precomputing_and_labelling(model, tmp_path):
    rng = random.Random(0)
    documents = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(40)]
    corpus = tmp_path / "words.txt"
    corpus.write_text("\n".join(documents))
    config = TrainConfig(
        hook="blocks.1.resid_post", expansion=2, k=4, tokens=8 * 64, batch_size=64, buffer_tokens=600, seq_len=16
    )
    trained = train_sae(model, config, name="mine", documents=documents, evaluate_tokens=0)
    assert verify(trained.path, SAES, deep=True) is not None
    sae = load_sae("store:mine", model)
    precompute_features(model, sae, trained.path, corpus=str(corpus), sequences=8, held_out_sequences=4)
    manifest = verify(trained.path, SAES, deep=True)
    assert manifest is not None and {LABELS_FILE, ATLAS_FILE} <= set(manifest["files"])
    set_feature_label(sae, 0, "my own label")  # kept in the store, apart from the SAE
    assert verify(resolve(SAES, model.key, "mine"), SAES, deep=True) == manifest
    precompute_features(model, sae, trained.path, corpus=str(corpus), sequences=4, held_out_sequences=4)  # again
    assert verify(trained.path, SAES, deep=True) is not None


def test_a_failed_rewrite_changes_neither_the_files_nor_the_manifest(model, tmp_path):
    folder = save_sae(random_sae(model), tmp_path / "mine", extra_files={LABELS_FILE: b"{}"})
    before = read_manifest(folder)

    def dies(path):
        path.write_bytes(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_files(folder, {LABELS_FILE: dies})
    assert (folder / LABELS_FILE).read_bytes() == b"{}" and read_manifest(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE, MANIFEST])


def test_a_folder_without_a_manifest_gets_none_and_bad_names_are_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    replace_files(folder, {LABELS_FILE: lambda path: path.write_bytes(b"{}")})
    assert (folder / LABELS_FILE).read_bytes() == b"{}" and not (folder / MANIFEST).exists()
    for name in ("../escape.json", MANIFEST, "a/b.json"):
        with pytest.raises(InputError, match="not a file name"):
            replace_files(folder, {name: lambda path: path.write_bytes(b"{}")})
    with pytest.raises(InputError, match="does not exist"):
        replace_files(tmp_path / "absent", {LABELS_FILE: lambda path: path.write_bytes(b"{}")})


def test_a_file_changed_behind_the_stores_back_is_still_caught(model, tmp_path):
    folder = save_sae(random_sae(model), tmp_path / "mine", extra_files={LABELS_FILE: labels_json({})})
    (folder / LABELS_FILE).write_bytes(b"changed by hand, not through the store")
    with pytest.raises(DamagedArtifact, match=LABELS_FILE):
        verify(folder, SAES)
