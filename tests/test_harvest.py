"""The sharded activation store, harvested in this process: the same rows as a live stream, resumable,
checked, and readable from any fsspec URL."""

from __future__ import annotations

import json
import random

import pytest
import torch

import glasslab as gl
from glasslab.activations import HarvestedRows, ShardFolder, harvest, open_harvest
from glasslab.activations.shards import decode_shard
from glasslab.dictionaries.activations import ActivationStream
from tests.tiny import WORDS, tiny_model
from tests.tolerance import slack

HOOKS = ["blocks.0.resid_post", "blocks.1.mlp.post"]


def documents(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def test_shards_hold_the_rows_a_live_stream_gives(model, tmp_path):
    done = harvest(model, HOOKS, str(tmp_path / "h"), tokens=300, seq_len=16, shard_tokens=60, documents=documents())
    manifest = done.manifest
    assert manifest.widths == {HOOKS[0]: model.d_model, HOOKS[1]: model.d_mlp}
    assert manifest.complete and done.shards_run == len(manifest.shards) == 5 and done.shards_kept == 0
    assert manifest.rows == 20 * 15  # 20 sequences of 15 rows after BOS
    for hook in HOOKS:
        live = torch.cat(list(ActivationStream(model, hook, documents(), 16, 4).rows()))[: manifest.rows]
        stored = torch.cat(list(HarvestedRows(done.url, hook).rows()))
        assert stored.shape == live.shape == (300, manifest.widths[hook])
        assert torch.allclose(stored, live, atol=slack(live), rtol=0)
    record = manifest.ordered()[1]
    assert record.first_sequence == 4 and record.sequences == 4 and record.rows == 60
    first, last = record.documents
    assert 0 <= first <= last < 40


def test_rows_restart_at_any_row(model, tmp_path):
    url = harvest(
        model, HOOKS[0], str(tmp_path / "h"), tokens=200, seq_len=16, shard_tokens=45, documents=documents()
    ).url
    every = torch.cat(list(HarvestedRows(url, HOOKS[0]).rows()))
    for start in (0, 44, 45, 46, 133, every.shape[0] - 1):
        assert torch.equal(torch.cat(list(HarvestedRows(url, HOOKS[0]).rows(start))), every[start:])
    assert torch.equal(torch.cat(list(HarvestedRows(url, HOOKS[0], max_rows=70).rows(30))), every[30:70])


def test_tokens_and_documents_are_stored(model, tmp_path):
    texts = documents()
    done = harvest(model, HOOKS[0], str(tmp_path / "h"), tokens=100, seq_len=16, shard_tokens=1000, documents=texts)
    tensors = decode_shard(ShardFolder(done.url), done.manifest.ordered()[0])
    tokens, owners = tensors["tokens"].long(), tensors["documents"].long()
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all() and (owners[:, 0] == -1).all()
    stream = [t for text in texts for t in model.tokenizer(text, add_special_tokens=False)["input_ids"] + [2]]
    assert tokens[:, 1:].reshape(-1).tolist() == stream[: tokens[:, 1:].numel()]
    first = len(model.tokenizer(texts[0], add_special_tokens=False)["input_ids"]) + 1  # its EOS included
    assert owners[:, 1:].reshape(-1)[:first].eq(0).all() and owners[:, 1:].reshape(-1)[first] == 1


def test_a_harvest_resumes_where_it_stopped(model, tmp_path):
    out = str(tmp_path / "h")
    sizes = {"tokens": 300, "seq_len": 16, "shard_tokens": 60, "documents": documents()}
    whole = harvest(model, HOOKS, str(tmp_path / "whole"), **sizes)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record.index == 1:
            raise Stop

    with pytest.raises(Stop):
        harvest(model, HOOKS, out, on_shard=stop_after_two, **sizes)
    partial = ShardFolder(out).manifest()
    assert partial is not None and not partial.complete and sorted(partial.shards) == [0, 1]
    with pytest.raises(gl.InputError, match="not finished"):
        HarvestedRows(out, HOOKS[0])
    resumed = harvest(model, HOOKS, out, **sizes)
    assert resumed.shards_kept == 2 and resumed.shards_run == 3
    assert [s.sha256 for s in resumed.manifest.ordered()] == [s.sha256 for s in whole.manifest.ordered()]


def test_another_harvest_in_the_folder_is_refused_unless_fresh(model, tmp_path):
    out = str(tmp_path / "h")
    harvest(model, HOOKS[0], out, tokens=60, seq_len=16, documents=documents())
    with pytest.raises(gl.InputError, match="different harvest"):
        harvest(model, HOOKS[1], out, tokens=60, seq_len=16, documents=documents())
    again = harvest(model, HOOKS[1], out, tokens=60, seq_len=16, documents=documents(), fresh=True)
    assert again.manifest.settings.hooks == (HOOKS[1],)


def test_a_damaged_shard_is_refused(model, tmp_path):
    done = harvest(model, HOOKS[0], str(tmp_path / "h"), tokens=60, seq_len=16, documents=documents())
    shard = tmp_path / "h" / done.manifest.ordered()[0].file
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(gl.InputError, match="damaged"):
        list(HarvestedRows(done.url, HOOKS[0]).rows())


def test_any_fsspec_url_holds_a_harvest(model):
    done = harvest(model, HOOKS[0], "memory://glasslab-test/h", tokens=60, seq_len=16, documents=documents())
    assert done.url == "memory://glasslab-test/h"
    rows = torch.cat(list(HarvestedRows(done.url, HOOKS[0]).rows()))
    assert rows.shape == (60, model.d_model)
    folder, manifest = open_harvest(done.url, model_key=model.key)
    assert json.loads(folder.read("harvest.json"))["rows"] == 60 == manifest.rows


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"hooks": []}, "no hooks"),
        ({"hooks": "blocks.9.resid_post"}, "blocks.9"),
        ({"dtype": "int8"}, "dtype must be"),
        ({"tokens": 0}, "tokens must be at least 1"),
        ({"seq_len": 1}, "seq_len"),
    ],
)
def test_bad_settings_are_one_line_errors(model, tmp_path, kwargs, fragment):
    settings = {"hooks": HOOKS[0], "tokens": 60, "seq_len": 16, **kwargs}
    hooks = settings.pop("hooks")
    with pytest.raises(gl.GlasslabError) as error:
        harvest(model, hooks, str(tmp_path / "h"), documents=documents(), **settings)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_reading_what_is_not_a_harvest_is_a_clear_error(model, tmp_path):
    with pytest.raises(gl.InputError, match="no harvest"):
        HarvestedRows(str(tmp_path), HOOKS[0])
    (tmp_path / "harvest.json").write_text("{not json")
    with pytest.raises(gl.InputError, match="not a glasslab harvest"):
        HarvestedRows(str(tmp_path), HOOKS[0])
    done = harvest(model, HOOKS[0], str(tmp_path / "h"), tokens=60, seq_len=16, documents=documents())
    with pytest.raises(gl.InputError, match=r"has no 'blocks\.1\.mlp\.post'"):
        HarvestedRows(done.url, HOOKS[1])
    with pytest.raises(gl.InputError, match="of model"):
        open_harvest(done.url, model_key="another-model")


def test_a_relative_folder_is_named_by_its_absolute_path(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = harvest(model, HOOKS[0], "acts", tokens=60, seq_len=16, documents=documents())
    assert done.url == str(tmp_path / "acts")  # what workers in other folders are handed


def test_a_doctored_manifest_names_no_file_outside_the_folder(model, tmp_path):
    done = harvest(model, HOOKS[0], str(tmp_path / "h"), tokens=60, seq_len=16, documents=documents())
    manifest = tmp_path / "h" / "harvest.json"
    manifest.write_text(manifest.read_text().replace('"shard-000000.safetensors"', '"../../secret"'))
    with pytest.raises(gl.InputError, match="not a glasslab harvest manifest"):
        HarvestedRows(done.url, HOOKS[0])


def test_fresh_with_a_hook_that_has_no_rows_keeps_the_old_harvest(model, tmp_path):
    out = str(tmp_path / "h")
    harvest(model, HOOKS[0], out, tokens=60, seq_len=16, documents=documents())
    with pytest.raises(gl.InputError, match="cannot read"):
        harvest(model, "blocks.0.attn.pattern", out, tokens=60, seq_len=16, documents=documents(), fresh=True)
    assert ShardFolder(out).manifest() is not None
