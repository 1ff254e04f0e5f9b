"""Saved edits go through the store API: a manifest on save, names checked by the store's rule, listed and
verified like every artifact; edits saved before manifests still load."""

from __future__ import annotations

import json

import pytest
import torch

from glasslab.errors import InputError
from glasslab.methods.editing import Edit, Fact, load_edit
from glasslab.methods.editing.edit import projection_weight, resolve_edit_path
from glasslab.store import EDITS, MANIFEST, DamagedArtifact, list_artifacts, location

from .tiny import tiny_model

FACT = Fact("the cat", "{} sat on the", " mat", " park")


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def small_edit(model) -> Edit:
    generator = torch.Generator().manual_seed(3)
    delta = torch.randn(projection_weight(model, 1).shape, generator=generator)
    return Edit(model.name, model.key, "rome", (FACT,), (1,), {1: delta})


def test_a_named_edit_is_saved_with_a_manifest_and_listed(model):
    saved = small_edit(model).save("cat-park")
    assert saved.path == location(EDITS, model.key, "cat-park")
    manifest = json.loads((saved.path / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["kind"] == "edit" and manifest["name"] == "cat-park" and manifest["model_key"] == model.key
    assert set(manifest["files"]) == {"delta.safetensors", "edit.json"}
    assert manifest["summary"] == {"method": "rome", "facts": 1, "layers": [1]}
    (listed,) = list_artifacts(EDITS, model.key)
    assert listed.name == "cat-park" and listed.to_dict()["summary"]["method"] == "rome"


def test_an_edit_saved_before_manifests_still_loads(model):
    edit = small_edit(model)
    folder = edit.save("old").path
    (folder / MANIFEST).unlink()
    loaded = load_edit(model, "old")
    assert torch.equal(loaded.deltas[1], edit.deltas[1])


def test_a_truncated_edit_is_refused_by_its_manifest(model, tmp_path):
    folder = small_edit(model).save(tmp_path / "elsewhere").path
    delta = folder / "delta.safetensors"
    delta.write_bytes(delta.read_bytes()[:-8])
    with pytest.raises(DamagedArtifact, match=r"delta\.safetensors has"):
        load_edit(model, folder)


def test_names_follow_the_store_rule(model):
    with pytest.raises(InputError, match="no saved edit 'never-saved'"):
        load_edit(model, "never-saved")
    with pytest.raises(InputError, match="give the saved edit a name"):
        small_edit(model).save("  ")


def test_resolve_edit_path_is_a_deprecated_alias_of_locate(model):
    with pytest.warns(DeprecationWarning, match="locate"):
        folder, name = resolve_edit_path("x", model.key)
    assert (folder, name) == (location(EDITS, model.key, "x"), "x")
