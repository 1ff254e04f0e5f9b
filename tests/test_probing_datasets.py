"""Probing datasets: user files (CSV/JSONL) with their one-line errors, the built-in sets, token positions.

Second routes: positions are checked against ``model.to_str_tokens`` (the token the user sees at that index).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from glasslab.errors import InputError
from glasslab.methods.probing.activations import tokenize_examples
from glasslab.methods.probing.datasets import BUILTIN, ProbeDataset, ProbeExample, load_probe_dataset

from .tiny import tiny_model


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_jsonl_read_the_same_examples(tmp_path):
    csv_file = write(
        tmp_path,
        "pets.csv",
        'text,label,position,group\n"the cat sat, on the mat",animal,cat,\nthe dog ran,animal,2,dog\n'
        "one two three,number,last,\nfour five,number,-1,five\n",
    )
    rows = [
        {"text": "the cat sat, on the mat", "label": "animal", "position": "cat"},
        {"text": "the dog ran", "label": "animal", "position": 2, "group": "dog"},
        {"text": "one two three", "label": "number"},
        {"text": "four five", "label": "number", "position": -1, "group": "five"},
    ]
    jsonl_file = write(tmp_path, "pets.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    from_csv, from_jsonl = load_probe_dataset(csv_file), load_probe_dataset(jsonl_file)
    strip = [(e.text, e.label, e.position, e.group) for e in from_csv.examples]
    assert strip == [(e.text, e.label, e.position, e.group) for e in from_jsonl.examples]
    assert strip[0] == ("the cat sat, on the mat", "animal", "cat", None)
    assert from_csv.classes == ["animal", "number"] and from_csv.name == "pets"
    assert from_csv.examples[1].source == "pets.csv line 3"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "text,position\nthe cat,last\nthe dog,last\n", "lacks column(s) 'label'"),
        ("a.csv", "text,label\nthe cat,x\nthe dog,x\n", "one class only ('x')"),
        ("a.csv", "text,label\nthe cat,x\nthe dog,y\n", "single example"),
        ("a.csv", "text,label\nthe cat,x,extra\nthe dog,y\n", "line 2: more fields"),
        ("a.csv", "text,label\n,x\nthe dog,y\n", "line 2: the text is empty"),
        ("a.csv", "", "is empty"),
        ("a.jsonl", '{"text": "the cat", "label": "x"}\nnot json\n', "a.jsonl line 2 is not valid JSON"),
        ("a.jsonl", '["the cat", "x"]\n', "not a JSON object"),
        ("a.jsonl", '{"text": "the cat"}\n', "lacks column(s) 'label'"),
        ("a.jsonl", '{"text": "the cat", "label": ""}\n', "label is missing or empty"),
    ],
)
def test_malformed_files_give_one_line_errors(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_probe_dataset(write(tmp_path, name, content))
    assert "\n" not in str(caught.value)


def test_missing_file_and_unknown_name():
    with pytest.raises(InputError, match="no such file"):
        load_probe_dataset("/nonexistent/probe.csv")
    with pytest.raises(InputError, match=r"unknown probing dataset 'nope'.*number, city, sentiment"):
        load_probe_dataset("nope")


def test_positions_resolve_to_the_tokens_the_user_sees():
    model = tiny_model("gemma3")
    examples = [
        ProbeExample("the cat sat on the mat", "a", "last"),
        ProbeExample("the cat sat on the mat", "a", 2),
        ProbeExample("the cat sat on the mat", "b", -3),
        ProbeExample("the cat sat on the mat", "b", "sat"),
        ProbeExample("the dog ran to the park", "b", "park", group="place"),
    ]
    tokenized = tokenize_examples(model, examples)
    shown = [model.to_str_tokens(e.text) for e in examples]
    assert tokenized.positions == [6, 2, 4, 3, 6]
    assert [shown[i][p] for i, p in enumerate(tokenized.positions)] == ["mat", "cat", "on", "sat", "park"]
    assert tokenized.tokens == ["mat", "cat", "on", "sat", "park"]
    assert tokenized.groups == ["mat", "cat", "on", "sat", "place"]  # default group: the token itself
    assert tokenized.ids[0] == model.to_tokens(examples[0].text)[0].tolist()


def test_word_position_is_the_last_token_of_a_multi_token_word():
    """The word-level tiny tokenizer splits "mary's" into mary / ' / s: the position is the last piece."""
    model = tiny_model("gemma3")
    tokenized = tokenize_examples(model, [ProbeExample("when mary's cat sat", "a", "mary's")])
    assert tokenized.positions == [4]
    assert model.to_str_tokens("when mary's cat sat")[3:6] == ["<unk>", "<unk>", "cat"]


@pytest.mark.parametrize(
    ("position", "message"),
    [(7, "position 7 is beyond the text's 7 tokens"), (-8, "position -8 is beyond"), ("dog", "'dog' does not occur")],
)
def test_bad_positions_name_the_line(tmp_path, position, message):
    model = tiny_model("gemma3")
    path = write(
        tmp_path,
        "p.jsonl",
        json.dumps({"text": "the cat sat on the mat", "label": "x", "position": position})
        + "\n"
        + json.dumps({"text": "a dog", "label": "x"})
        + "\n"
        + json.dumps({"text": "a cat", "label": "y"})
        + "\n"
        + json.dumps({"text": "the cat", "label": "y"})
        + "\n",
    )
    with pytest.raises(InputError, match=f"p.jsonl line 1: .*{message}"):
        tokenize_examples(model, load_probe_dataset(path).examples)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_datasets_are_balanced_fixed_and_grouped(name):
    data = load_probe_dataset(name)
    again = load_probe_dataset(name)
    assert data.examples == again.examples  # fixed seed: the same examples every time
    counts = Counter(data.labels)
    assert len(counts) == 2 and min(counts.values()) == max(counts.values())
    assert 150 <= len(data) <= 500 and data.positive in data.classes
    groups = Counter(e.group for e in data.examples)
    assert all(n >= 2 for n in groups.values())  # words repeat: grouped folds matter
    assert len(set(e.text for e in data.examples)) == len(data)


def test_builtin_word_positions_point_at_the_word():
    model = tiny_model("gemma3")
    data = load_probe_dataset("number")
    assert all(e.position in e.text.split() for e in data.examples)
    cat = [e for e in data.examples if e.group == "cat"]
    assert {e.label for e in cat} == {"singular", "plural"}
    tokenize_examples(model, data.examples[:8])  # every word found


def test_dataset_checks_its_own_shape():
    with pytest.raises(InputError, match="no examples"):
        ProbeDataset("empty", ())
    with pytest.raises(InputError, match="'z' is not a class"):
        ProbeDataset(
            "d",
            (ProbeExample("a", "x"), ProbeExample("b", "x"), ProbeExample("c", "y"), ProbeExample("d", "y")),
            positive="z",
        )


def test_city_labels_are_not_given_away_by_the_country_alone():
    data = load_probe_dataset("city")
    by_country = Counter((e.text.rstrip(".").rsplit(" in ", 1)[1], e.label) for e in data.examples)
    assert len(set(by_country.values())) == 1  # every country: as many true as false statements
    assert all(e.text.startswith(e.group) or f" {e.group} " in e.text for e in data.examples)
