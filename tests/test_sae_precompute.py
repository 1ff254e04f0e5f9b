"""Precomputing an SAE trained later (issue: instant dashboards): the sae-precompute job writes labels and
the atlas beside a store SAE with progress, the listing then says so and its dashboards are read from the
atlas; a shipped or unknown SAE is refused before any work; `glasslab sae precompute` does the same."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main  # registers the sub-apps
from glasslab.cli.app import app
from glasslab.dictionaries.labels_file import LABELS_FILE, read_labels
from glasslab.methods.features.atlas import ATLAS_FILE
from glasslab.sae import save_sae
from glasslab.store import store_path
from tests.test_sae_splice import random_sae
from tests.test_server_helpers import client, wait_job
from tests.tiny import WORDS, save_tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("precompute") / "tiny-gpt2"
    save_tiny("gpt2", path)
    return path


@pytest.fixture
def model(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    # Many documents: a .txt file is one document, put in the train or test split by a hash of its path, so a
    # one-file corpus lands wholly in the test split for one temporary folder in ten.
    corpus = tmp_path / "words.jsonl"
    lines = [json.dumps({"text": " ".join(WORDS[i:] + WORDS[:i])}) for i in range(len(WORDS))] * 8
    corpus.write_text("\n".join(lines) + "\n")
    loaded = gl.load(folder)
    saved = save_sae(random_sae(loaded), store_path("saes", loaded.key, "mine"))
    (saved / "training.json").write_text(json.dumps({"config": {"corpus": str(corpus)}}))
    return loaded


def test_the_job_precomputes_a_store_sae_and_its_dashboards_are_then_read_from_the_atlas(model, tmp_path):
    c = client(model, tmp_path)
    listed = {s["name"]: s for s in c.get("/api/saes").json()["saes"]}
    assert listed["store:mine"]["precomputed"] is False
    live = c.post("/api/sae-dashboard", json={"sae": "store:mine", "feature": 0}).json()
    assert live["sequences"] == 64  # scanned live
    job = c.post(
        "/api/jobs",
        json={"kind": "sae-precompute", "params": {"sae": "store:mine", "sequences": 16, "held_out_sequences": 16}},
    ).json()
    done = wait_job(c, job["id"])
    assert done["status"] == "done", done.get("error")
    assert done["total"] == done["done"] == 32
    result = done["result"]
    assert result["kind"] == "sae_precompute" and result["sequences"] == 16 and "train split" in result["corpus"]
    folder = store_path("saes", model.key, "mine")
    assert (folder / ATLAS_FILE).is_file() and result["labels"] == len(read_labels(folder))
    assert c.get("/api/saes").json()["saes"][0]["precomputed"] is True
    board = c.post("/api/sae-dashboard", json={"sae": "store:mine", "feature": 0}).json()
    assert (board["sequences"], board["corpus"]) == (16, result["corpus"])  # the atlas, not a new scan
    features = c.post("/api/sae-features", json={"prompt": "the cat sat", "sae": "store:mine"}).json()
    scored = [f for t in features["tokens"] for f in t["top"] if f["detection"] is not None]
    assert scored  # the bars carry each label's detection score


def test_a_shipped_or_unknown_sae_is_refused_before_any_work(model, tmp_path):
    c = client(model, tmp_path)
    for name, status in (("store:absent", 404), ("default:nothing", 404)):
        response = c.post("/api/jobs", json={"kind": "sae-precompute", "params": {"sae": name}})
        assert response.status_code == status, response.text
    assert not (store_path("saes", model.key, "mine") / LABELS_FILE).exists()


def test_the_cli_precomputes_a_store_sae(model, folder):
    result = CliRunner().invoke(
        app,
        ["sae", "precompute", "--sae", "store:mine", "--model", str(folder), "--sequences", "8",
         "--held-out-sequences", "4", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["sequences"] == 8 and summary["dashboards"] > 0
    assert (store_path("saes", model.key, "mine") / ATLAS_FILE).is_file()
    refused = CliRunner().invoke(app, ["sae", "precompute", "--sae", "default:anything", "--model", str(folder)])
    assert refused.exit_code != 0 and "come with their dashboards" in refused.output
