"""Automatic labels that name concepts and carry a detection score, checked by a second route: WordNet's
classes on known words, the detection counts against a brute-force count over the same held-out tokens,
and promoted tokens against the corpus's own token counts."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import pytest
import torch

from glasslab.data import batches, load_corpus, packed_sequences
from glasslab.errors import InputError
from glasslab.methods.features.concepts import WORDNET_ENV, shared_concept, wordnet
from glasslab.methods.features.detection import detection_scores
from glasslab.methods.features.labels import describe_features
from tests.test_sae_splice import random_sae
from tests.tiny import WORDS, tiny_model

NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _corpus(path, words, documents=60, length=30, seed=0):
    rng = random.Random(seed)
    lines = [json.dumps({"text": " ".join(rng.choice(words) for _ in range(length))}) for _ in range(documents)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_wordnet_is_installed_for_the_suite():
    # setup installs nltk (test extra) and Debian's wordnet-base; without them labels name no concept.
    assert wordnet() is not None


def test_labels_still_name_classes_after_the_store_that_held_wordnet_is_gone(tmp_path, monkeypatch):
    # Debian's WordNet lacks the index nltk needs, so a completed copy lives in the store; each call reads
    # the current store's copy, rebuilt when a store is removed or replaced while the process runs.
    monkeypatch.delenv(WORDNET_ENV, raising=False)
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "first"))
    assert shared_concept(Counter(["monday", "tuesday", "friday"])) is not None
    assert (tmp_path / "first" / "wordnet" / "lexnames").is_file()
    shutil.rmtree(tmp_path / "first")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "second"))
    assert shared_concept(Counter(["paris", "london", "berlin", "rome"])).name == "national capital"
    assert (tmp_path / "second" / "wordnet" / "lexnames").is_file()


@pytest.mark.parametrize(
    ("words", "name"),
    [
        (["doctor", "nurse", "surgeon", "physician", "doctor"], "health professional"),
        (["monday", "tuesday", "friday"], "weekday"),
        (["paris", "london", "berlin", "rome"], "national capital"),
    ],
)
def test_words_that_share_a_class_are_named_by_it(words, name):
    concept = shared_concept(Counter(words))
    assert concept is not None and concept.name == name
    assert concept.coverage == pytest.approx(1.0) and set(words) <= concept.members


def test_function_words_digits_and_too_few_words_name_no_class():
    assert shared_concept(Counter(["the", "a", "of", "and"])) is None
    assert shared_concept(Counter(["doctor", "nurse"])) is None  # two words are not a pattern
    # Digits and punctuation count against the cover: three doctors among many other tokens are no class.
    assert shared_concept(Counter({"doctor": 1, "nurse": 1, "surgeon": 1, "0": 5, ",": 5})) is None


def test_detection_counts_equal_a_brute_force_count(tmp_path):
    model = tiny_model("llama")
    sae = random_sae(model)
    corpus = _corpus(tmp_path / "mixed.jsonl", WORDS)
    word_sets = {0: {"cat", "dog"}, 5: {"paris"}, 9: set(WORDS)}
    scores = detection_scores(model, sae, word_sets, corpus=corpus, split="test", sequences=6, seq_len=16)
    # Second route: every held-out token, its activations, and the label's words compared one by one.
    tp, fired, predicted, tokens = Counter(), Counter(), Counter(), 0
    stream = batches(packed_sequences(model, load_corpus(corpus, split="test"), 16, limit=6), 16)
    for batch in stream:
        with torch.inference_mode():
            acts = sae.encode(model.run(batch, cache=[sae.hook]).cache[sae.hook].float())
        for row, ids in zip(acts, batch.tolist(), strict=True):
            for position in range(1, len(ids)):  # BOS left out
                tokens += 1
                word = model.tokenizer.decode([ids[position]]).strip()
                for feature, words in word_sets.items():
                    on, named = bool(row[position, feature] > 0), word in words
                    fired[feature] += on
                    predicted[feature] += named
                    tp[feature] += on and named
    assert tokens > 0
    for feature, score in scores.items():
        assert (score.fired, score.predicted, score.tokens) == (fired[feature], predicted[feature], tokens)
        if score.predicted:
            assert score.precision == pytest.approx(tp[feature] / predicted[feature])
        assert score.f1 == pytest.approx(2 * tp[feature] / (fired[feature] + predicted[feature]))


def test_labels_name_the_class_of_a_corpus_of_numbers_and_score_it(tmp_path):
    model = tiny_model("llama")
    sae = random_sae(model)
    corpus = _corpus(tmp_path / "numbers.jsonl", NUMBERS)
    described = describe_features(model, sae, corpus=corpus, sequences=12, seq_len=16, held_out_sequences=6)
    labels = described.labels
    held_out = packed_sequences(model, load_corpus(corpus, split="test"), 16, limit=6)
    held_out_words = [model.tokenizer.decode([i]).strip() for ids in held_out for i in ids.tolist()[1:]]
    assert any("concept" in entry.extra for entry in labels.values())
    for entry in labels.values():
        words = dict(entry.extra.get("words", []))
        named = [w for w in words if w in NUMBERS]
        if len(named) < 3 or sum(words[w] for w in named) < 0.6 * sum(words.values()):
            assert "concept" not in entry.extra  # too few words, or too few of them numbers
            continue
        # Three or more number words make most of what the feature fires on: the label names their class...
        assert entry.extra["concept"] in {"digit", "integer", "number"}, entry.label
        assert entry.label.startswith(entry.extra["concept"] + ": fires on ")
        # ...and its detection score predicts exactly the held-out tokens of that class or of the named words.
        members = shared_concept(Counter(words)).members | {t.strip() for t in entry.extra["fires_on"]}
        assert entry.extra["detection"]["predicted"] == sum(w in members for w in held_out_words)


def test_promoted_tokens_are_tokens_the_corpus_uses(tmp_path):
    model = tiny_model("llama")
    sae = random_sae(model)
    used = WORDS[:8]
    corpus = _corpus(tmp_path / "few.jsonl", used, documents=80)
    described = describe_features(model, sae, corpus=corpus, sequences=12, seq_len=16, held_out_sequences=2)
    allowed = {f" {w}" for w in used} | set(used)
    atlas = described.atlas
    for row in atlas.tensors["promote_ids"].tolist() + atlas.tensors["suppress_ids"].tolist():
        assert {model.tokenizer.decode([i]) for i in row} <= allowed
    for entry in described.labels.values():
        assert set(entry.extra["promotes"]) <= allowed


def test_bad_options_are_one_line_errors(tmp_path):
    model = tiny_model("llama")
    sae = random_sae(model)
    with pytest.raises(InputError):
        describe_features(model, sae, corpus=str(tmp_path / "missing.jsonl"), sequences=2, seq_len=16)
