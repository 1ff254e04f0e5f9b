"""A person's feature labels (glasslab.sae.set_feature_label, `glasslab sae label`, POST /api/sae-label): kept
in the store over the SAE's own labels.json, which is never rewritten; and feature densities (labels.json,
else the training sparsity) setting dense features apart in sae_features (max_density)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main  # registers the sub-apps
from glasslab.cli.app import app
from glasslab.dictionaries import loading as sae_loading
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json
from glasslab.dictionaries.loading import labels_of
from glasslab.errors import InputError
from glasslab.methods.features.encode import feature_densities, sae_features
from glasslab.sae import clear_feature_label, load_sae, save_sae, set_feature_label
from glasslab.store import store_path
from tests.test_sae_splice import random_sae
from tests.test_server_helpers import client
from tests.tiny import save_tiny

PROMPT = "the cat sat on the mat"
OWN = {
    3: FeatureLabel("cat words", "auto", {"density": 0.02, "detection": 0.8, "words": ["cat"]}),
    5: FeatureLabel("mats", "neuronpedia"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("label-edit") / "tiny-gpt2"
    save_tiny("gpt2", path)
    return path


@pytest.fixture
def setup(folder, tmp_path, monkeypatch):
    """The tiny model, and one SAE with its own labels.json both shipped (a fake package folder) and in the store."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sae_loading, "SHIPPED_ROOT", tmp_path / "shipped")
    model = gl.load(folder)
    sae = random_sae(model)
    extra = {LABELS_FILE: labels_json(OWN)}
    save_sae(sae, tmp_path / "shipped" / "tiny-sae", extra_files=extra)
    save_sae(sae, store_path("saes", model.key, "mine"), extra_files=extra)
    return model


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", ["store:mine", "default:tiny-sae"])
def test_user_label_overrides_and_keeps_the_sae_files(setup, name):
    model = setup
    sae = load_sae(name, model)
    own_files = files(sae_loading.origin_of(sae).folder)
    other = load_sae(name, model)
    assert labels_of(other)[3].label == "cat words"  # read and kept on this copy before the edit
    written = set_feature_label(sae, 3, "  cats,\n  and kittens ")
    assert written == labels_of(sae)[3]
    assert (written.label, written.source) == ("cats, and kittens", "user")
    # The automatic label's facts stay (unknown fields too), and what it replaced is said.
    assert written.extra == {"density": 0.02, "detection": 0.8, "words": ["cat"], "replaces": "cat words"}
    assert labels_of(other)[3].label == "cats, and kittens"  # another loaded copy sees it at once
    assert labels_of(load_sae(name, model))[5].label == "mats"  # other features keep the SAE's labels
    assert files(sae_loading.origin_of(sae).folder) == own_files  # the SAE's own folder is untouched
    kept = list(store_path("sae-user-labels").glob(f"*/{LABELS_FILE}"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["features"]["3"]["source"] == "user"
    set_feature_label(sae, 40, "unlabelled before")
    assert labels_of(other)[40].extra == {}
    assert sae_features(model, sae, PROMPT, top=64).tokens  # labels reach the results
    assert clear_feature_label(sae, 3) and not clear_feature_label(sae, 3)
    assert labels_of(other)[3] == OWN[3]
    assert clear_feature_label(sae, 40) and not kept[0].exists()  # no labels of yours left: no file
    assert 40 not in labels_of(other)


@pytest.mark.parametrize(
    ("feature", "text", "says"),
    [
        (3, "   ", "label: empty"),
        (3, "x" * 201, "at most 200"),
        (64, "too far", "out of range for this SAE (valid: 0..63)"),
        (-1, "negative", "out of range"),
    ],
)
def test_bad_labels_are_one_line_errors(setup, feature, text, says):
    sae = load_sae("store:mine", setup)
    with pytest.raises(InputError, match=says.replace("(", r"\(").replace(")", r"\)")) as raised:
        set_feature_label(sae, feature, text)
    assert "\n" not in str(raised.value)
    assert not store_path("sae-user-labels").exists()


def test_densities_set_dense_features_apart(setup, folder, tmp_path):
    model = setup
    plain = random_sae(model)
    fired = sae_features(model, plain, PROMPT, top=8).tokens[3].top
    first, second, third = (s.feature for s in fired[:3])
    # Training sparsity (log10 density): every feature at 1%, the second strongest at 30% (dense); the label's
    # density wins where there is one: the strongest is dense by its label, the third is not though training
    # said it was.
    log10 = torch.full((plain.d_sae,), -2.0)
    log10[second], log10[third], log10[0] = math.log10(0.3), math.log10(0.5), -10.0
    labels = {
        first: FeatureLabel("always", "auto", {"density": 0.6}),
        third: FeatureLabel("t", "auto", {"density": 0.05}),
    }
    save_sae(plain, tmp_path / "dense", extra_files={LABELS_FILE: labels_json(labels)}, sparsity=log10)
    sae = load_sae(str(tmp_path / "dense"), model)
    density = feature_densities(sae)
    assert density[first] == pytest.approx(0.6) and density[second] == pytest.approx(0.3, rel=1e-5)
    assert density[third] == pytest.approx(0.05) and density[0] == 0.0 and density[1] == pytest.approx(0.01, rel=1e-5)

    everything = sae_features(model, sae, PROMPT, top=8)
    split = sae_features(model, sae, PROMPT, top=8, max_density=0.1)
    assert split.max_density == 0.1 and everything.max_density is None
    for whole, part in zip(everything.tokens, split.tokens, strict=True):
        assert whole.dense == [] and part.l0 == whole.l0
        assert all(s.density is not None and s.density > 0.1 for s in part.dense)
        assert all(s.density <= 0.1 for s in part.top)
        # Dense ones are those of the overall top that are dense; merged back they give the overall top.
        assert part.dense == [s for s in whole.top if s.density > 0.1]
        merged = sorted(part.top + part.dense, key=lambda s: -s.activation)[: len(whole.top)]
        assert [s.feature for s in merged] == [s.feature for s in whole.top]
    token = split.tokens[3]
    assert {s.feature for s in token.dense} >= {first, second} and third in {s.feature for s in token.top}
    assert len(token.top) == min(8, token.l0 - len({first, second}))
    shown = split.to_dict()["tokens"][3]
    assert shown["dense"][0] == {
        "feature": first,
        "activation": token.dense[0].activation,
        "label": "always",
        "density": 0.6,
        "detection": None,
    }
    with pytest.raises(InputError, match="max_density is a share of tokens"):
        sae_features(model, sae, PROMPT, max_density=1.5)
    # The CLI sets dense features apart the same way.
    cli = ["sae", "features", PROMPT, "--sae", str(tmp_path / "dense"), "--model", str(folder), "--top", "8"]
    result = CliRunner().invoke(app, [*cli, "--max-density", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(split.to_dict()))
    table = CliRunner().invoke(app, [*cli, "--max-density", "0.1"])
    assert table.exit_code == 0 and "set apart as dense" in table.stdout


def test_label_route_and_cached_results(setup, tmp_path):
    model = setup
    c = client(model, tmp_path)
    feature = {"prompt": PROMPT, "sae": "store:mine", "top": 64}
    fires = next(s["feature"] for s in c.post("/api/sae-features", json=feature).json()["tokens"][2]["top"])
    dashboard = {"sae": "store:mine", "feature": fires, "sequences": 2, "seq_len": 16}

    def labels() -> tuple:
        """The feature's label in the (cached) features of the prompt and in its dashboard."""
        tokens = c.post("/api/sae-features", json=feature).json()["tokens"]
        shown = {s["label"] for t in tokens for s in t["top"] if s["feature"] == fires}
        return shown, c.post("/api/sae-dashboard", json=dashboard).json()["label"]

    assert labels() == ({None}, None)
    got = c.post("/api/sae-label", json={"sae": "store:mine", "feature": fires, "label": "felines"})
    assert got.status_code == 200 and got.json()["label"] == {"label": "felines", "source": "user"}
    assert labels() == ({"felines"}, {"label": "felines", "source": "user"})
    got = c.post("/api/sae-label", json={"sae": "store:mine", "feature": 3, "label": "cats"}).json()
    assert got["label"] == {**OWN[3].to_json(), "label": "cats", "source": "user", "replaces": "cat words"}
    cleared = c.post("/api/sae-label", json={"sae": "store:mine", "feature": fires, "clear": True}).json()
    assert cleared["label"] is None and labels() == ({None}, None)
    for body, status, says in [
        ({"sae": "store:mine", "feature": 3, "label": ""}, 400, "label: empty"),
        ({"sae": "store:mine", "feature": 3, "label": "y" * 201}, 400, "at most 200"),
        ({"sae": "store:mine", "feature": 99, "label": "far"}, 400, "out of range"),
        ({"sae": "store:mine", "feature": 3, "label": "a", "clear": True}, 400, "not both"),
        (
            {"sae": str(store_path("saes", model.key, "mine")), "feature": 3, "label": "a"},
            404,
            "is not one of the SAEs",
        ),
    ]:
        response = c.post("/api/sae-label", json=body)
        assert response.status_code == status and says in response.json()["error"], response.json()
        assert "\n" not in response.json()["error"]
    split = c.post("/api/sae-features", json={**feature, "max_density": 0.01}).json()
    assert split["max_density"] == 0.01
    assert split["tokens"] == c.post("/api/sae-features", json=feature).json()["tokens"]  # no other has one


def test_cli_label(setup, folder):
    model = setup
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, ["sae", "label", *map(str, args), "--model", str(folder)])

    result = invoke("store:mine", 3, "cats again")
    assert result.exit_code == 0 and "'cats again' (user)" in result.stdout, result.stderr
    assert labels_of(load_sae("store:mine", model))[3].label == "cats again"
    result = invoke("store:mine", 3, "--clear")
    assert result.exit_code == 0 and "your label removed; 'cat words' (auto)" in result.stdout
    for args, says in [
        (("store:mine", 70, "far"), "out of range"),
        (("store:mine", 3), "give the label's text, or --clear"),
        (("store:mine", 3, "   "), "label: empty"),
    ]:
        result = invoke(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and says in lines[0], result.stderr
