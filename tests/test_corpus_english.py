"""The shipped English corpus: what the manifest says is what the stream holds (a second count), the sources
are mixed from the first documents on, the splits partition it, the outside set never appears in it, each
source's licence statement ships beside it, and the text reads as English."""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from itertools import islice

import pytest

from glasslab.data import load_corpus
from glasslab.data.corpus import ENGLISH_FOLDER, NAMED, _shipped_documents

MANIFEST = json.loads((ENGLISH_FOLDER / "manifest.json").read_text(encoding="utf-8"))
STOPWORDS = {"the", "a", "and", "of", "to", "is", "in", "you", "it", "that", "for", "on", "with", "your", "be"}


@cache
def stream(file: str) -> tuple[tuple[str, str], ...]:
    return tuple(_shipped_documents(file))


def source_of(doc_id: str) -> str:
    return doc_id.split(":")[1]


@pytest.mark.parametrize(("part", "file"), [("corpus", "corpus.jsonl.xz"), ("outside", "outside.jsonl.xz")])
def test_the_manifest_counts_what_the_stream_holds(part, file):
    words, documents = Counter(), Counter()
    for doc_id, text in stream(file):
        words[source_of(doc_id)] += len(text.split())
        documents[source_of(doc_id)] += 1
    listed = [s for s in MANIFEST["sources"] if s["set"] == part]
    assert {s["name"]: s["words"] for s in listed} == dict(words)
    assert {s["name"]: s["documents"] for s in listed} == dict(documents)


def test_several_million_words_of_varied_genres():
    corpus = [s for s in MANIFEST["sources"] if s["set"] == "corpus"]
    assert sum(s["words"] for s in corpus) > 4_000_000
    assert max(s["words"] for s in corpus) < 0.2 * sum(s["words"] for s in corpus)  # no source dominates
    genres = " ".join(s["genre"] for s in corpus)
    for kind in ("narrative", "dialogue", "encyclopedic", "news-like", "instructions"):
        assert kind in genres


def test_every_prefix_mixes_the_sources():
    """A short read (a dashboard scan, a quick training) sees many sources, not the first source's text."""
    first = Counter(source_of(doc_id) for doc_id, _ in islice(stream("corpus.jsonl.xz"), 300))
    assert len(first) >= 10 and max(first.values()) < 100, first


def test_splits_partition_the_english_corpus():
    train, test = list(load_corpus("english", split="train")), list(load_corpus("english", split="test"))
    everything = [text for _, text in stream("corpus.jsonl.xz")]
    assert len(train) + len(test) == len(everything)
    assert 0.07 < len(test) / len(everything) < 0.13
    assert Counter(train) + Counter(test) == Counter(everything)


def test_the_outside_set_is_kept_out():
    inside = {text for _, text in stream("corpus.jsonl.xz")}
    outside = list(load_corpus("english-outside"))
    assert outside and not inside & set(outside)
    outside_sources = {s["name"] for s in MANIFEST["sources"] if s["set"] == "outside"}
    assert not outside_sources & {source_of(doc_id) for doc_id, _ in stream("corpus.jsonl.xz")}


def test_each_source_ships_its_licence_statement():
    licences = ENGLISH_FOLDER / "licences"
    for source in MANIFEST["sources"]:
        assert source["licence"] and source["statements"], source["name"]
        for name in source["statements"]:
            assert (licences / name).stat().st_size > 100, name
    for cited in ("GPL-2", "GPL-3", "GFDL-1.2", "MPL-2.0"):  # licences the statements cite by name
        assert (licences / cited).is_file()


def test_the_text_reads_as_english():
    """Every longer document holds common English words, and nearly all characters are plain ASCII (curly
    quotes, dashes and the odd redaction block are the rest)."""
    words_seen, ascii_chars, chars = 0, 0, 0
    for name in ("english", "english-outside"):
        for text in islice(load_corpus(name), 2000):
            words = re.findall(r"[a-z']+", text.lower())
            assert STOPWORDS & set(words) or len(words) < 40, text[:200]
            words_seen += len(words)
            ascii_chars, chars = ascii_chars + sum(c.isascii() for c in text), chars + len(text)
    assert words_seen > 100_000 and ascii_chars / chars > 0.99


def test_named_corpora_and_a_clear_error_for_others():
    assert {"builtin", "pydocs", "english", "english-outside"} <= set(NAMED)
    # The default is the English corpus, under its own name (so nothing cached by name mixes two texts).
    builtin = load_corpus("builtin", split="test")
    assert builtin.describe() == "english (test split)"
    assert next(iter(builtin)) == next(iter(load_corpus("english", split="test")))
    assert next(iter(load_corpus("pydocs"))) != next(iter(load_corpus("builtin")))
    with pytest.raises(Exception, match="'english'"):
        load_corpus("englsh")


def test_statistics_cached_for_builtin_are_the_english_corpus_s():
    from glasslab.methods.editing.stats import stats_folder
    from tests.tiny import tiny_model

    model = tiny_model("gpt2")
    assert stats_folder(model, 1, "builtin", "train", 100, 16) == stats_folder(model, 1, "english", "train", 100, 16)
    assert stats_folder(model, 1, "builtin", "train", 100, 16) != stats_folder(model, 1, "pydocs", "train", 100, 16)
