"""Feature search on a tiny model with labels written here: words found in the fields that matter most rank first,
a word the labels never say is found by meaning when the model's embeddings make it a synonym, the index follows
the labels, bad queries fail in one line, and the HTTP and CLI faces give the Python answer."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main
from glasslab.cli.app import app
from glasslab.dictionaries import loading as sae_loading
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json
from glasslab.errors import InputError
from glasslab.methods.features import search as search_module
from glasslab.methods.features.search import DENSE_ABOVE, FIELD_WEIGHTS, STEM_FACTOR, stems
from glasslab.model.architectures import architecture_for
from glasslab.sae import save_sae, search_features
from glasslab.store import store_path
from tests.test_sae_splice import random_sae
from tests.test_server import approx_tree
from tests.test_server_helpers import client
from tests.tiny import save_tiny, tiny_hf, tiny_model, word_tokenizer


def auto(fires_on: list[str], **extra) -> FeatureLabel:
    text = f"fires on {', '.join(repr(t) for t in fires_on)}; promotes 'the'"
    return FeatureLabel(text, "auto", {"fires_on": fires_on, "density": 0.001, "promotes": ["the"], **extra})


LABELS = {
    0: auto([" cat", " mat"], words=[["cat", 12], ["mat", 2]], concept="feline", contexts=["the cat sat on"]),
    1: auto([" dog"], words=[["dog", 9]], contexts=["a cat and a dog ran"]),  # 'cat' only in a context
    2: FeatureLabel("capital cities of europe", "user"),
    3: auto([" walked"], context="the dog[ walked] to"),  # first-generation label: fires_on and one context
    5: auto([" the"], density=0.4),  # dense
    8: auto(["("]),  # punctuation
}  # feature 4 has no label: never a result


def labelled(model, folder, labels=LABELS):
    """A random SAE saved with ``labels`` beside it, loaded back as any SAE folder is."""
    save_sae(random_sae(model, d_sae=16), folder, extra_files={LABELS_FILE: labels_json(labels)})
    return gl.load_sae(str(folder), model)


def test_stems_meet_plurals_and_verb_forms():
    def meet(a: str, b: str) -> bool:
        return bool(set(stems(a)) & set(stems(b)))

    assert all(meet("name", w) for w in ("names", "named", "naming"))
    assert meet("running", "run") and meet("stopped", "stop") and meet("studies", "study") and meet("boxes", "box")
    assert not meet("care", "car") and not meet("dose", "dos")
    assert stems("class") == ("class",) and stems("is") == ("is",)


def test_words_rank_by_the_field_they_are_in(tmp_path):
    model = tiny_model("gpt2")
    sae = labelled(model, tmp_path / "sae")
    result = search_features(model, sae, "the cats")
    assert result.terms == ["cats"]  # 'the' is a stop word
    hits = {h.feature: h for h in result.hits}
    assert result.hits[0].feature == 0 and "words: cat" in hits[0].matched
    # 'cat' shares the stem of 'cats'; it is one of the words feature 0 fires on most, and only in feature 1's contexts
    assert hits[0].lexical == pytest.approx(STEM_FACTOR * FIELD_WEIGHTS["words"])
    assert hits[1].lexical == pytest.approx(STEM_FACTOR * FIELD_WEIGHTS["contexts"])
    assert "contexts: cat" in hits[1].matched
    assert search_features(model, sae, "feline").hits[0].feature == 0  # the shared concept
    assert search_features(model, sae, "capitals").hits[0].feature == 2  # a user label's text
    assert search_features(model, sae, "dog").hits[0].feature == 1  # fires on 'dog' beats 'dog' in a context
    assert search_features(model, sae, "walking").hits[0].feature == 3
    assert search_features(model, sae, " ( ").hits[0].feature == 8  # a query with no letters is looked up whole
    assert "promotes: the" in {m for h in search_features(model, sae, "the").hits for m in h.matched}
    everything = search_features(model, sae, "the cat dog walks capital feline", top=100).hits
    assert 4 not in {h.feature for h in everything}


def test_exclude_dense_and_top(tmp_path):
    model = tiny_model("gpt2")
    sae = labelled(model, tmp_path / "sae")
    assert 5 in {h.feature for h in search_features(model, sae, "the").hits}
    dense = search_features(model, sae, "the", exclude_dense=True).hits
    assert 5 not in {h.feature for h in dense} and all((h.density or 0) <= DENSE_ABOVE for h in dense)
    assert len(search_features(model, sae, "cat", top=1).hits) == 1


def synonym_model(a: str, b: str) -> gl.Model:
    """A tiny model whose tokens ``a`` and ``b`` have the same input embedding: synonyms in its own space."""
    hf = copy.deepcopy(tiny_hf("gpt2"))
    vocab = word_tokenizer().get_vocab()
    table = hf.get_input_embeddings().weight
    with torch.no_grad():
        table[vocab[b]] = table[vocab[a]]
    return gl.Model(hf, word_tokenizer(), architecture_for("gpt2"), name="tiny-synonyms")


def test_meaning_finds_a_word_the_labels_never_say(tmp_path):
    model = synonym_model("cat", "seven")
    labels = {10: auto([" seven"], words=[["seven", 5]]), 11: auto([" paris"], words=[["paris", 5]])}
    sae = labelled(model, tmp_path / "tied", labels)
    hits = search_features(model, sae, "cat").hits
    assert hits[0].feature == 10 and hits[0].lexical == 0
    assert hits[0].meaning == pytest.approx(1.0, abs=1e-5)
    assert hits[0].matched == ["meaning: 'seven' cos 1.00"]
    plain = labelled(
        tiny_model("gpt2"), tmp_path / "plain", labels
    )  # the same labels, embeddings not tied: no such match
    assert all(h.meaning < 0.9 for h in search_features(tiny_model("gpt2"), plain, "cat").hits)


def test_the_index_follows_the_labels(tmp_path, monkeypatch):
    """Labels read again (a new dict, as when the user relabels a feature) give a new index; the same ones do not."""
    model = tiny_model("gpt2")
    sae = labelled(model, tmp_path / "sae")
    search_features(model, sae, "cat")
    index = sae.search_cache
    search_features(model, sae, "dog")
    assert sae.search_cache is index
    relabelled = {7: auto([" paris"], words=[["paris", 3]])}
    monkeypatch.setattr(search_module, "labels_of", lambda _: relabelled)
    assert [h.feature for h in search_features(model, sae, "paris").hits] == [7]
    assert sae.search_cache is not index


def test_results_serialise_and_render(tmp_path):
    model = tiny_model("gpt2")
    result = search_features(model, labelled(model, tmp_path / "sae"), "cat")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "sae_feature_search" and data["query"] == "cat" and data["hits"][0]["feature"] == 0
    assert set(data["hits"][0]) >= {"feature", "label", "score", "lexical", "meaning", "matched", "density"}
    assert "best matches" in result._repr_html_()


@pytest.mark.parametrize(
    ("query", "top", "message"),
    [("   ", 20, "query: give a word"), ("cat " * 60, 20, "at most 200"), ("cat", 0, "top must be")],
)
def test_bad_queries_fail_in_one_line(query, top, message, tmp_path):
    model = tiny_model("gpt2")
    with pytest.raises(InputError, match=message) as caught:
        search_features(model, labelled(model, tmp_path / "sae"), query, top=top)
    assert "\n" not in str(caught.value)


def test_an_sae_without_labels_says_so():
    model = tiny_model("gpt2")
    with pytest.raises(InputError, match="no feature labels"):
        search_features(model, random_sae(model), "cat")


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A tiny model folder and an SAE with LABELS saved in the store."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sae_loading, "SHIPPED_ROOT", tmp_path / "shipped")
    folder = tmp_path / "tiny-gpt2"
    save_tiny("gpt2", folder)
    model = gl.load(folder)
    labelled(model, store_path("saes", model.key, "mine"))
    return model, folder, tmp_path


def test_http_answers_as_python(stored):
    model, _, home = stored
    c = client(model, home)
    answer = c.post("/api/sae-search", json={"sae": "store:mine", "query": "cats", "top": 3})
    assert answer.status_code == 200, answer.text
    expected = search_features(model, gl.load_sae("store:mine", model), "cats", top=3).to_dict()
    got = answer.json()
    assert got.pop("sae_name") == "store:mine"
    assert got == approx_tree(json.loads(json.dumps(expected)))
    for body, status in [
        ({"sae": "store:mine", "query": ""}, 422),
        ({"sae": "store:mine", "query": "x" * 201}, 422),
        ({"sae": "store:mine", "query": "cat", "top": 101}, 422),
        ({"sae": "store:mine", "query": "   "}, 400),
        ({"sae": "/etc/passwd", "query": "cat"}, 404),
    ]:
        assert c.post("/api/sae-search", json=body).status_code == status, body


def test_cli_json_equals_python(stored):
    model, folder, _ = stored
    runner = CliRunner()
    run = runner.invoke(
        app, ["sae", "search", "cats", "--sae", "store:mine", "--top", "3", "--json", "--model", str(folder)]
    )
    assert run.exit_code == 0, (run.stderr, run.exception)
    expected = search_features(model, gl.load_sae("store:mine", model), "cats", top=3).to_dict()
    got = json.loads(run.stdout)
    assert [h["feature"] for h in got["hits"]] == [h["feature"] for h in expected["hits"]]
    assert [h["score"] for h in got["hits"]] == pytest.approx([h["score"] for h in expected["hits"]], abs=1e-6)
    table = runner.invoke(app, ["sae", "search", "cats", "--model", str(folder)])  # default: the SAE on disk
    assert table.exit_code == 0 and "feature" in table.stdout
    bad = runner.invoke(app, ["sae", "search", " ", "--sae", "store:mine", "--model", str(folder)])
    assert bad.exit_code == 2 and "query" in bad.stderr and "Traceback" not in bad.stderr
