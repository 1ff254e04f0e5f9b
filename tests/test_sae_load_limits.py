"""Absurd or damaged SAE sizes: a cfg.json whose widths are not positive whole numbers, that disagree with
the weight file, or that would not fit in memory is one line, found before anything is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from glasslab.dictionaries import files, memory
from glasslab.dictionaries.loading import load_sae
from glasslab.errors import InputError
from glasslab.sae import SAE, SAEConfig, save_sae

from .test_errors import one_line
from .test_sae_load_cli import folder, ok, one_error, setup  # noqa: F401 (fixtures)
from .test_sae_splice import random_sae
from .tiny import tiny_model

PROMPT = "the cat sat on the mat"
HOOK = "blocks.1.resid_post"


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    """A valid SAE folder (tiny gpt2, d_in 32, d_sae 64) to damage copies of."""
    return save_sae(random_sae(tiny_model("gpt2")), tmp_path_factory.mktemp("sae") / "good")


def with_cfg(good: Path, target: Path, **changes) -> Path:
    shutil.copytree(good, target)
    cfg = json.loads((target / "cfg.json").read_text())
    (target / "cfg.json").write_text(json.dumps({**cfg, **changes}))
    return target


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        ({"d_sae": 10**12}, "W_enc has shape [32, 64] but cfg.json (d_in=32, d_sae=1000000000000)"),
        ({"d_in": 10**7, "d_sae": 10**7}, "W_enc has shape [32, 64] but cfg.json (d_in=10000000, d_sae=10000000)"),
        ({"d_sae": 128}, "W_enc has shape [32, 64] but cfg.json (d_in=32, d_sae=128) needs [32, 128]"),
        ({"d_sae": -3}, "SAE d_sae must be a positive whole number; got -3"),
        ({"d_in": "abc"}, "SAE d_in must be a positive whole number; got 'abc'"),
        ({"d_sae": 1.5}, "SAE d_sae must be a positive whole number; got 1.5"),
        ({"d_in": True}, "SAE d_in must be a positive whole number; got True"),
        ({"architecture": "topk", "k": "many"}, "SAE k must be a positive whole number; got 'many'"),
    ],
)
def test_bad_widths_are_one_line(good_folder, tmp_path, changes, hint):
    bad = with_cfg(good_folder, tmp_path / "bad", **changes)
    with pytest.raises(InputError) as info:
        load_sae(str(bad))
    assert hint in one_line(info.value)


def test_a_whole_float_width_still_loads(good_folder, tmp_path):
    """16384.0 is a width some writers emit; it is the same as 16384."""
    sae = load_sae(str(with_cfg(good_folder, tmp_path / "float", d_sae=64.0)))
    assert sae.d_sae == 64 and isinstance(sae.d_sae, int)


def test_the_file_is_checked_before_anything_is_allocated(good_folder, tmp_path, monkeypatch):
    """With cfg.json claiming 10^12 features, neither the weights are read nor the SAE built."""
    bad = with_cfg(good_folder, tmp_path / "bad", d_sae=10**12)

    def refuse(*args, **kwargs):
        raise AssertionError("allocated before the shapes were checked")

    monkeypatch.setattr(files, "load_file", refuse)
    monkeypatch.setattr(SAE, "__init__", refuse)
    with pytest.raises(InputError, match="d_sae=1000000000000"):
        files.load_sae_folder(bad)


def test_an_sae_larger_than_free_memory_is_refused():
    """10^6 x 10^7 float32 weights, twice, are 80 TB: no machine has that free."""
    with pytest.raises(InputError) as info:
        SAE(SAEConfig("standard", 10**6, 10**7, HOOK))
    text = one_line(info.value)
    assert "needs 80.0 TB for its float32 parameters but cpu has" in text


def test_a_consistent_file_too_big_for_memory_is_refused_before_reading(good_folder, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    monkeypatch.setattr(files, "load_file", lambda *a, **k: pytest.fail("read before the memory check"))
    with pytest.raises(InputError) as info:
        load_sae(str(good_folder))
    assert "(d_in=32, d_sae=64) needs" in one_line(info.value) and "1,000 bytes free" in str(info.value)


def test_free_memory_is_known_on_this_machine():
    free = memory.available_bytes("cpu")
    assert free is None or free > 0
    if Path("/proc/meminfo").is_file():
        assert free is not None


def test_absurd_cfg_through_the_cli(setup, tmp_path):  # noqa: F811 (the imported fixture)
    invoke, _, sae_folder, _ = setup
    bad = with_cfg(sae_folder, tmp_path / "huge", d_sae=10**12)
    line = one_error(invoke("features", PROMPT, "--sae", bad))
    assert "d_sae=1000000000000" in line
    ok(invoke("features", PROMPT, "--sae", sae_folder, "--json"))


def test_widths_are_checked_when_built_in_python():
    with pytest.raises(InputError, match="d_sae must be a positive whole number; got 0"):
        SAEConfig("standard", 32, 0, HOOK)
    assert SAEConfig("standard", torch.tensor(32).item(), 64, HOOK).d_in == 32
