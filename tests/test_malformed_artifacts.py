"""Every saved artifact kind, damaged every way an adversarial run tried, loads as a one-line InputError.

The artifacts are real (made and saved by glasslab on a tiny model); then one file is damaged: weights
truncated, replaced by noise, by a pickle that would leave a mark if anything unpickled it, holding NaN or a
wrong shape; the JSON beside them not JSON, not an object, or emptied. Loading must refuse each in one line
(no traceback, nothing unpickled), and a folder that loads after the damage is undone proves the damage, not
the fixture, made the difference.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import glasslab as gl
from glasslab.methods.editing import Fact, key_statistics, rome
from glasslab.methods.editing.edit import load_edit
from glasslab.methods.intervene.steering import load_steering_vector, make_steering_vector
from glasslab.methods.lenses.tuned_lens import load_tuned_lens, train_tuned_lens
from glasslab.sae import SAE, SAEConfig, load_sae, save_sae

from .tiny import WORDS, tiny_model

FAMILY = "gpt2"


@pytest.fixture(scope="module")
def model() -> gl.Model:
    return tiny_model(FAMILY)


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> str:
    """Seeded text in the tiny vocabulary (the built-in corpus is mostly unknown words to a tiny model)."""
    generator = torch.Generator().manual_seed(0)
    folder = tmp_path_factory.mktemp("words")
    for doc in range(20):
        picks = torch.randint(len(WORDS), (300,), generator=generator).tolist()
        (folder / f"doc{doc:02d}.txt").write_text(" ".join(WORDS[i] for i in picks), encoding="utf-8")
    return str(folder)


def make_vector(model: gl.Model, folder: Path, _words: str) -> None:
    make_steering_vector(model, [("the cat sat on the mat", "the dog ran to the park")], layer=1).save(folder)


def make_lens(model: gl.Model, folder: Path, words: str) -> None:
    train_tuned_lens(model, words, tokens=600, seq_len=16, batch_size=4, folder=folder.parent / "lens-training")
    shutil.copytree(folder.parent / "lens-training" / "lens", folder)  # the lens itself, without the running sums


def make_edit(model: gl.Model, folder: Path, words: str) -> None:
    stats = key_statistics(model, [1], corpus=words, tokens=2000, seq_len=32)[1]
    fact = Fact("the cat", "{} sat on the", " mat", " park")
    rome(model, fact, layer=1, stats=stats, prefixes=[""], steps=2).save(folder)


def make_sae(model: gl.Model, folder: Path, _words: str) -> None:
    sae = SAE(SAEConfig("topk", model.d_model, 64, "blocks.1.resid_post", model_name=model.name, k=4))
    with torch.no_grad():
        for param in sae.parameters():
            param.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    save_sae(sae, folder)


# kind: (make, load, weights file, JSON file)
KINDS: dict[str, tuple[Callable, Callable, str, str]] = {
    "steering vector": (make_vector, load_steering_vector, "vector.safetensors", "vector.json"),
    "tuned lens": (make_lens, load_tuned_lens, "lens.safetensors", "lens.json"),
    "edit": (make_edit, load_edit, "delta.safetensors", "edit.json"),
    "sae": (make_sae, lambda model, folder: load_sae(str(folder), model), "sae_weights.safetensors", "cfg.json"),
}


class Mark:
    """Unpickling this creates a folder: proof that something unpickled the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def truncate(path: Path, _mark: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def noise(path: Path, _mark: Path) -> None:
    path.write_bytes(torch.randint(0, 256, (path.stat().st_size,), generator=torch.Generator().manual_seed(0))
                     .to(torch.uint8).numpy().tobytes())  # fmt: skip


def pickled(path: Path, mark: Path) -> None:
    path.write_bytes(pickle.dumps({"weight": Mark(mark)}))


def nan(path: Path, _mark: Path) -> None:
    tensors = load_file(str(path))
    save_file({k: torch.full_like(t, float("nan")) if t.is_floating_point() else t for k, t in tensors.items()}, path)


def wrong_shape(path: Path, _mark: Path) -> None:
    tensors = load_file(str(path))
    save_file({k: t.flatten()[:-1].contiguous() if t.numel() > 1 else t for k, t in tensors.items()}, path)


WEIGHT_DAMAGE = {"truncated": truncate, "noise": noise, "pickle": pickled, "nan": nan, "wrong shape": wrong_shape}
JSON_DAMAGE = {"not json": "{not json", "a list": "[1, 2]", "empty object": "{}", "null": "null"}


@pytest.fixture(scope="module")
def originals(model, words, tmp_path_factory) -> dict[str, Path]:
    """Each kind made and saved once; tests damage copies."""
    home = tmp_path_factory.mktemp("home")
    previous = os.environ.get("GLASSLAB_HOME")
    os.environ["GLASSLAB_HOME"] = str(home)  # key statistics are cached in the store
    try:
        made = {}
        for kind, (make, load, *_files) in KINDS.items():
            folder = home / "made" / kind.replace(" ", "-")
            make(model, folder, words)
            load(model, folder)  # the undamaged artifact loads
            made[kind] = folder
        return made
    finally:
        if previous is None:
            os.environ.pop("GLASSLAB_HOME")
        else:
            os.environ["GLASSLAB_HOME"] = previous


def refused(load: Callable, model: gl.Model, folder: Path) -> str:
    with pytest.raises(gl.InputError) as info:
        load(model, folder)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("damage", WEIGHT_DAMAGE)
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_weights_are_refused(model, originals, tmp_path, kind, damage):
    _make, load, weights, _json = KINDS[kind]
    folder = tmp_path / "copy"
    shutil.copytree(originals[kind], folder)
    mark = tmp_path / "unpickled"
    WEIGHT_DAMAGE[damage](folder / weights, mark)
    refused(load, model, folder)
    assert not mark.exists(), "a pickle was loaded"
    shutil.copy(originals[kind] / weights, folder / weights)
    load(model, folder)  # undone, it loads again


@pytest.mark.parametrize("damage", JSON_DAMAGE)
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_json_is_refused(model, originals, tmp_path, kind, damage):
    _make, load, _weights, meta = KINDS[kind]
    folder = tmp_path / "copy"
    shutil.copytree(originals[kind], folder)
    (folder / meta).write_text(JSON_DAMAGE[damage], encoding="utf-8")
    refused(load, model, folder)


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_file_is_refused(model, originals, tmp_path, kind):
    _make, load, weights, meta = KINDS[kind]
    for missing in (weights, meta):
        folder = tmp_path / missing
        shutil.copytree(originals[kind], folder)
        (folder / missing).unlink()
        refused(load, model, folder)


def test_the_fixtures_json_is_an_object(originals):
    """The JSON damage replaces a real object (so 'empty object' and 'a list' are real changes)."""
    for kind, (*_fns, _weights, meta) in KINDS.items():
        assert isinstance(json.loads((originals[kind] / meta).read_text(encoding="utf-8")), dict), kind
