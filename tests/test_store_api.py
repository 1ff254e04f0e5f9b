"""The store API: one name check for every kind (hostile names refused), lookup by name or folder, listing,
atomic saves with a verifiable manifest, and resumable checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import glasslab as gl
from glasslab import store
from glasslab.store import (
    EDITS,
    EXPERIMENTS,
    EXPERIMENTS_FILE,
    KEY_STATS,
    KINDS,
    SAE_CHECKPOINTS,
    STEERING,
    TUNED_LENS,
    WORDNET,
    ArtifactNotFound,
    Checkpoints,
    DamagedArtifact,
    list_artifacts,
    locate,
    location,
    resolve,
    save,
    verify,
)

KEY = "tiny-gemma3-L2-0123456789ab"
HOSTILE = [
    "..",
    ".",
    "../escape",
    "a/../../b",
    "/etc/passwd",
    "a/b",  # a separator: refused for one-part names (two-part kinds check each part: see below)
    "a/b/c",
    "a/..",
    "a//b",
    "a\\b",
    ".hidden",
    "-flag",
    "",
    " ",
    "name\n",
    "nul\x00byte",
    "spaced name",
    "x" * 101,
    "~",
    "~/x",
    "é",
]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


def one_line(exc: BaseException) -> str:
    assert isinstance(exc, gl.InputError), type(exc)
    assert "\n" not in str(exc) and str(exc).strip()
    return str(exc)


def write_vector(folder: Path, payload: bytes = b"weights") -> None:
    (folder / "vector.safetensors").write_bytes(payload)
    (folder / "vector.json").write_text(json.dumps({"hook": "blocks.1.resid_pre"}), encoding="utf-8")


# -- names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_leave_their_folder(home, name):
    for kind in KINDS.values():
        key = KEY if kind.per_model else None
        if name == "a/b" and kind.name_parts == 2:
            assert location(kind, key, name).parent.parent == location(kind, key)
            continue
        with pytest.raises(gl.InputError) as info:
            location(kind, key, name)
        one_line(info.value)


@pytest.mark.parametrize("key", ["", ".", "..", "../x", "/abs", "a/b", "a\\b", "k\n", "k\x00", None, "x" * 256])
def test_hostile_model_keys_are_refused(home, key):
    with pytest.raises(gl.InputError, match="model key"):
        location(STEERING, key, "ok")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_where_paths_are_not_allowed(home, name):
    with pytest.raises(gl.InputError):
        locate(SAE_CHECKPOINTS, KEY, name)
    with pytest.raises(gl.InputError), save(SAE_CHECKPOINTS, KEY, name):
        pytest.fail("a hostile name got a staging folder")
    assert not home.exists() or not any(p.is_file() for p in home.rglob("*"))


def test_valid_names_and_layouts(home):
    assert location(STEERING, KEY, "topic") == home / "steering" / KEY / "topic"
    assert location(EDITS, KEY, "a.b_c-1") == home / "editing" / KEY / "edits" / "a.b_c-1"
    assert location(KEY_STATS, KEY, "builtin-1234-train/layer-3") == (
        home / "editing" / KEY / "key-stats" / "builtin-1234-train" / "layer-3"
    )
    assert location(TUNED_LENS, KEY) == home / "tuned-lens" / KEY
    assert location(EXPERIMENTS, name=EXPERIMENTS_FILE) == home / "experiments.sqlite"
    assert location(WORDNET) == home / "wordnet"
    assert location(STEERING, KEY, "x" * 100).name == "x" * 100
    with pytest.raises(gl.InputError, match="model key"):
        location(STEERING, None, "topic")
    with pytest.raises(gl.InputError, match="NAME/NAME"):
        location(KEY_STATS, KEY, "only-one-part")


def test_a_path_stands_in_for_a_name_only_where_the_kind_allows(home, tmp_path):
    assert locate(STEERING, KEY, "topic") == (home / "steering" / KEY / "topic", "topic")
    assert locate(STEERING, KEY, str(tmp_path / "v")) == (tmp_path / "v", None)
    assert locate(STEERING, KEY, Path("topic")) == (Path("topic"), None)  # a Path is always a folder
    assert locate(STEERING, KEY, "../v") == (Path("../v"), None)  # not a name: a relative folder, as before
    with pytest.raises(gl.InputError, match="give the steering vector a name"):
        locate(STEERING, KEY, "  ")
    with pytest.raises(gl.InputError, match="not valid"):
        locate(KEY_STATS, KEY, str(tmp_path / "x" / "layer-1"))


def test_a_path_inside_its_own_kinds_folder_is_that_artifact_where_paths_are_not_allowed(home, tmp_path):
    kind_folder = location(SAE_CHECKPOINTS, KEY)
    own = kind_folder / "a name with spaces"  # a folder glasslab named itself (a GGUF file's stem)
    assert locate(SAE_CHECKPOINTS, KEY, own) == (own, "a name with spaces")
    for elsewhere in (tmp_path / "x", kind_folder / "a" / "b", kind_folder / ".."):
        with pytest.raises(gl.InputError, match="not valid"):
            locate(SAE_CHECKPOINTS, KEY, elsewhere)


# -- lookup and listing -----------------------------------------------------------------------------
def test_resolve_by_name_and_by_path(home, tmp_path):
    with save(STEERING, KEY, "topic") as folder:
        write_vector(folder)
    assert resolve(STEERING, KEY, "topic") == home / "steering" / KEY / "topic"
    elsewhere = tmp_path / "elsewhere" / "v"
    with save(STEERING, KEY, str(elsewhere)) as folder:
        write_vector(folder)
    assert resolve(STEERING, KEY, str(elsewhere)) == elsewhere
    assert resolve(STEERING, KEY, elsewhere) == elsewhere
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["v"]


def test_not_found_names_what_is_saved(home, tmp_path):
    with pytest.raises(ArtifactNotFound) as info:
        resolve(STEERING, KEY, "missing")
    assert "none saved" in one_line(info.value) and "glasslab steering-vector" in str(info.value)
    for name in ("beta", "alpha"):
        with save(STEERING, KEY, name) as folder:
            write_vector(folder)
    with pytest.raises(ArtifactNotFound, match=r"no steering vector 'missing' .*saved: alpha, beta"):
        resolve(STEERING, KEY, "missing")
    with pytest.raises(ArtifactNotFound, match="no steering vector at"):
        resolve(STEERING, KEY, str(tmp_path / "nowhere"))
    (home / "steering" / KEY / "alpha" / "vector.json").unlink()  # incomplete: not found, not trusted
    with pytest.raises(ArtifactNotFound, match="saved: beta"):
        resolve(STEERING, KEY, "alpha")


def test_listing_skips_staging_incomplete_and_foreign_entries(home):
    for name, hook in (("b-vec", "blocks.0.resid_pre"), ("a-vec", "blocks.1.resid_pre")):
        with save(STEERING, KEY, name, summary={"hook": hook}) as folder:
            write_vector(folder)
    root = home / "steering" / KEY
    (root / ".partial-c-vec-1-cafecafe").mkdir()  # a write in progress (pid 1 runs)
    (root / "half").mkdir()  # no files
    (root / "stray.txt").write_text("x")
    old = root / "old"  # saved before manifests: still listed and resolved
    old.mkdir()
    write_vector(old)
    listed = list_artifacts(STEERING, KEY)
    assert [a.name for a in listed] == ["a-vec", "b-vec", "old"]
    assert listed[0].to_dict()["summary"] == {"hook": "blocks.1.resid_pre"}
    assert listed[0].to_dict()["bytes"] > 0 and listed[0].manifest["model_key"] == KEY
    assert listed[2].manifest is None and listed[2].to_dict()["bytes"] is None
    assert resolve(STEERING, KEY, "old") == old
    assert list_artifacts(STEERING, "another-model-L1-000000000000") == []


def test_listing_names_spanning_sub_folders(home):
    for name in ("sample-a/layer-1", "sample-a/layer-0", "sample-b/layer-2"):
        with save(KEY_STATS, KEY, name) as folder:
            (folder / "moment.safetensors").write_bytes(b"m")
            (folder / "stats.json").write_text("{}")
    names = [a.name for a in list_artifacts(KEY_STATS, KEY)]
    assert names == ["sample-a/layer-0", "sample-a/layer-1", "sample-b/layer-2"]


# -- atomic save and manifest -----------------------------------------------------------------------
def test_save_writes_a_verifiable_manifest(home):
    with save(STEERING, KEY, "topic", summary={"hook": "blocks.1.resid_pre"}) as folder:
        write_vector(folder, b"0123456789")
        (folder / "sub").mkdir()
        (folder / "sub" / "extra.bin").write_bytes(b"xyz")
    final = home / "steering" / KEY / "topic"
    manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "steering" and manifest["name"] == "topic" and manifest["model_key"] == KEY
    assert manifest["glasslab_version"] == gl.__version__ and manifest["created"].endswith("+00:00")
    assert sorted(manifest["files"]) == ["sub/extra.bin", "vector.json", "vector.safetensors"]
    assert manifest["files"]["vector.safetensors"]["bytes"] == 10
    assert len(manifest["files"]["vector.safetensors"]["sha256"]) == 64
    assert verify(final, STEERING, deep=True) == manifest


def test_a_failed_save_leaves_nothing_and_keeps_the_old_one(home):
    with save(STEERING, KEY, "topic") as folder:
        write_vector(folder, b"old")
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error), save(STEERING, KEY, "topic") as folder:
            write_vector(folder, b"new")
            raise error("stopped mid-write")
    root = home / "steering" / KEY
    assert sorted(p.name for p in root.iterdir()) == ["topic"]
    assert (root / "topic" / "vector.safetensors").read_bytes() == b"old"
    with pytest.raises(RuntimeError), save(STEERING, KEY, "fresh") as folder:
        write_vector(folder)
        raise RuntimeError("stopped")
    assert not (root / "fresh").exists() and list_artifacts(STEERING, KEY)[0].name == "topic"


@pytest.mark.parametrize("damage", ["truncated", "missing", "changed in place", "manifest overwritten", "forged"])
def test_the_manifest_detects_damage(home, damage):
    with save(STEERING, KEY, "topic") as folder:
        write_vector(folder, b"0123456789")
        (folder / "notes.txt").write_text("extra file, recorded too")
    final = home / "steering" / KEY / "topic"
    weights = final / "vector.safetensors"
    if damage == "truncated":
        weights.write_bytes(b"01234")
    elif damage == "missing":
        (final / "notes.txt").unlink()
    elif damage == "changed in place":
        weights.write_bytes(b"9876543210")  # same size: only the sha256 tells
        assert verify(final, STEERING) is not None
    elif damage == "forged":
        manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
        manifest["files"]["../../../../etc/hostname"] = {"bytes": 1, "sha256": "0" * 64}
        (final / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    else:
        (final / "manifest.json").write_text("{not json")
    with pytest.raises(DamagedArtifact) as info:
        verify(final, STEERING, deep=True)
    message = one_line(info.value)
    assert str(final) in message and "unreadable" in message
    assert damage == "manifest overwritten" or "glasslab steering-vector" in message  # how to make it again
    if damage == "truncated":
        assert "vector.safetensors has 5 bytes, its manifest records 10" in message
    if damage != "changed in place":
        with pytest.raises(DamagedArtifact):
            resolve(STEERING, KEY, "topic")
        assert list_artifacts(STEERING, KEY) == []


# -- checkpoints ------------------------------------------------------------------------------------
def checkpoint(points: Checkpoints, step: int) -> None:
    with points.save(step, summary={"loss": 1.0 / (step + 1)}) as folder:
        (folder / "state.bin").write_bytes(bytes([step % 256]) * (step + 1))


def test_checkpoints_resume_from_the_latest_complete_one(home):
    points = Checkpoints(location(SAE_CHECKPOINTS, KEY, "run"), SAE_CHECKPOINTS, KEY, keep=2)
    assert points.latest() is None
    for step in (10, 20, 30):
        checkpoint(points, step)
    assert [step for step, _ in points.complete()] == [20, 30]  # the oldest was pruned
    step, folder = points.latest()
    assert step == 30 and (folder / "state.bin").read_bytes() == bytes([30]) * 31
    assert json.loads((folder / "manifest.json").read_text())["summary"]["step"] == 30
    # A newer step that was half-written (no manifest: copied in part), or truncated, is never resumed.
    half = points.path(40)
    half.mkdir()
    (half / "state.bin").write_bytes(b"x")
    truncated = points.path(35)
    truncated.mkdir()
    checkpoint(Checkpoints(home / "elsewhere", SAE_CHECKPOINTS, KEY), 35)
    for file in (home / "elsewhere" / "step-000000035").iterdir():
        (truncated / file.name).write_bytes(file.read_bytes()[:3])
    staging = points.folder / f".partial-step-000000050-{os.getpid()}-abcdabcd"  # a save in progress
    staging.mkdir()
    assert points.latest()[0] == 30
    checkpoint(points, 45)
    assert [step for step, _ in points.complete()] == [30, 45]
    assert not half.exists() and not truncated.exists() and staging.exists()  # the running write is left alone
    points.clear()
    assert points.latest() is None and not points.folder.exists()


def test_a_failed_checkpoint_leaves_the_previous_one(home):
    points = Checkpoints(home / "job", SAE_CHECKPOINTS, KEY)
    checkpoint(points, 1)
    with pytest.raises(KeyboardInterrupt), points.save(2) as folder:
        (folder / "state.bin").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert points.latest()[0] == 1 and sorted(p.name for p in points.folder.iterdir()) == ["step-000000001"]
    with pytest.raises(gl.InputError, match="step"):
        points.path(-1)
    with pytest.raises(gl.InputError, match="keep"):
        Checkpoints(home / "job", SAE_CHECKPOINTS, keep=0)


# -- callers ----------------------------------------------------------------------------------------
def write_corpus(folder: Path, words: list[str]) -> Path:
    """Ten documents: a stable hash of each one's id sends about 10% to the test split, so one alone may miss train."""
    folder.mkdir()
    for doc in range(10):
        (folder / f"doc{doc}.txt").write_text(" ".join(words[(doc + i) % len(words)] for i in range(120)))
    return folder


def test_steering_vectors_save_and_load_through_the_store(home):
    from glasslab.methods.intervene.steering import load_steering_vector, make_steering_vector

    from .tiny import tiny_model

    model = tiny_model("gemma3")
    pairs = [("the cat sat on the mat", "the dog ran to the park"), ("one two three", "four five six seven")]
    saved = make_steering_vector(model, pairs, layer=1).save("topic")
    listed = list_artifacts(STEERING, model.key)
    assert [a.name for a in listed] == ["topic"] and listed[0].path == saved.path
    assert listed[0].manifest["summary"]["hook"] == "blocks.1.resid_pre" and listed[0].manifest["summary"]["pairs"] == 2
    with pytest.raises(gl.InputError, match=r"no steering vector 'other' .*saved: topic"):
        load_steering_vector(model, "other")
    weights = saved.path / "vector.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(gl.InputError, match=r"vector\.safetensors has \d+ bytes, its manifest records"):
        load_steering_vector(model, "topic")
    (saved.path / "manifest.json").unlink()  # as saved before manifests: read as before (and refused as before)
    with pytest.raises(gl.InputError, match="unreadable"):
        load_steering_vector(model, "topic")


def test_tuned_lens_and_its_checkpoint_are_checked_against_their_manifests(home, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from glasslab.methods.lenses.tuned_lens import load_tuned_lens, train_tuned_lens

    from .tiny import WORDS, tiny_model

    corpus = write_corpus(tmp_path / "corpus", WORDS)
    model = tiny_model("gpt2")
    train_tuned_lens(model, str(corpus), tokens=120, seq_len=16, batch_size=4)
    root = home / "tuned-lens" / model.key
    assert [a.name for a in list_artifacts(TUNED_LENS, model.key)] == ["lens"]
    assert verify(root / "checkpoint", TUNED_LENS, deep=True)["summary"]["tokens"] > 0
    sums = root / "checkpoint" / "sums.safetensors"
    # Still a readable safetensors file with the right tensors: only the manifest tells it was replaced.
    save_file({**load_file(sums), "extra": torch.zeros(3)}, sums)
    with pytest.raises(gl.InputError, match=r"checkpoint .* is unreadable"):
        train_tuned_lens(model, str(corpus), tokens=240, seq_len=16, batch_size=4)
    weights = root / "lens" / "lens.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(gl.InputError, match=r"lens\.safetensors has \d+ bytes"):
        load_tuned_lens(model)


def test_key_statistics_are_listed_and_a_replaced_file_is_measured_again(home, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from glasslab.methods.editing.stats import key_statistics

    from .tiny import WORDS, tiny_model

    corpus = write_corpus(tmp_path / "_hidden corpus", WORDS)  # its slug must still make a valid store name
    model = tiny_model("gpt2")
    first = key_statistics(model, [0, 1], corpus=str(corpus), tokens=200, seq_len=16)
    names = [a.name for a in list_artifacts(KEY_STATS, model.key)]
    assert [name.split("/")[1] for name in names] == ["layer-0", "layer-1"]
    assert names[0].startswith("hidden-corpus-") and first[0].path == location(KEY_STATS, model.key, names[0])
    moment = first[1].path / "moment.safetensors"
    save_file({**load_file(moment), "extra": torch.zeros(2)}, moment)  # readable, but not what was saved
    again = key_statistics(model, [0, 1], corpus=str(corpus), tokens=200, seq_len=16)
    assert again[0].from_cache and not again[1].from_cache
