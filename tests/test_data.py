"""Corpora: the offline built-in text, local files, splits, and packing into sequences."""

from __future__ import annotations

import json

import pytest
import torch

import glasslab as gl
from glasslab.data import batches, load_corpus, packed_sequences

from .tiny import tiny_model


def take(iterable, n):
    out = []
    for item in iterable:
        out.append(item)
        if len(out) == n:
            break
    return out


def test_pydocs_corpus_is_offline_python_text():
    from pydoc_data.topics import topics

    docs = take(load_corpus("pydocs"), 5)
    first_topic = topics[sorted(topics)[0]]
    assert docs[0] == first_topic  # reference-manual topics come first, in sorted order
    assert all(isinstance(d, str) and d.strip() for d in docs)


def test_pydocs_corpus_includes_stdlib_docstrings():
    import __future__

    import inspect
    from pydoc_data.topics import topics

    docs = take(load_corpus("pydocs"), len(topics) + 1)
    assert docs[-1] == inspect.cleandoc(__future__.__doc__)  # the first standard-library file, read without import


def test_splits_partition_the_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(400)))
    everything = list(load_corpus(str(path)))
    train = list(load_corpus(str(path), split="train"))
    test = list(load_corpus(str(path), split="test"))
    assert sorted(train + test) == sorted(everything)
    assert not set(train) & set(test)
    assert 0.03 < len(test) / len(everything) < 0.2  # about 10%
    assert list(load_corpus(str(path), split="test")) == test  # stable


def test_text_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat on the mat")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.jsonl").write_text(
        json.dumps({"body": "a dog ran"}) + "\n\n" + json.dumps({"body": "to the park"}) + "\n"
    )
    (sub / "ignored.csv").write_text("x,y")
    assert list(load_corpus(str(tmp_path / "a.txt"))) == ["the cat sat on the mat"]
    assert list(load_corpus(str(sub), text_field="body")) == ["a dog ran", "to the park"]


def test_a_text_file_splits_by_paragraph_the_same_wherever_it_lies(tmp_path):
    text = "\n\n".join(f"paragraph {n} says something\nover two lines" for n in range(200)) + "\n"
    places = [tmp_path / "here", tmp_path / "there" / "deeper"]
    for place in places:
        place.mkdir(parents=True)
        (place / "book.txt").write_text(text)
    everything = list(load_corpus(str(places[0] / "book.txt")))
    assert len(everything) == 200 and everything[3] == "paragraph 3 says something\nover two lines"
    splits = [[list(load_corpus(str(place / "book.txt"), split=s)) for s in ("train", "test")] for place in places]
    assert splits[0] == splits[1]  # the split is the file's, not its folder's
    train, test = splits[0]
    assert sorted(train + test) == sorted(everything) and train and test
    assert [list(load_corpus(str(place), split="test")) for place in places] == [test, test]


@pytest.mark.parametrize(
    "content, fragment",
    [("not json\n", "is not valid JSON"), (json.dumps({"other": 1}) + "\n", "no string field 'text'")],
)
def test_malformed_jsonl_is_a_one_line_error(tmp_path, content, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(gl.InputError) as error:
        list(load_corpus(str(path)))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(gl.InputError, match="not one of 'builtin', 'pydocs', 'english'"):
        load_corpus(str(tmp_path / "missing"))
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(gl.InputError, match=r"\.txt or \.jsonl"):
        load_corpus(str(tmp_path / "x.csv"))
    with pytest.raises(gl.InputError, match="split"):
        load_corpus("builtin", split="validation")


def test_hf_dataset_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(gl.InputError) as error:
        list(load_corpus("hf:glasslab-test/no-such-dataset"))
    message = str(error.value)
    assert "\n" not in message
    assert "datasets" in message or "builtin" in message


def test_packing_reproduces_the_token_stream(tmp_path):
    model = tiny_model("llama")
    docs = ["the cat sat on the mat", "a dog ran to the park", "mary and john went to the store"]
    stream = []
    for doc in docs:
        stream += model.tokenizer(doc, add_special_tokens=False)["input_ids"] + [model.tokenizer.eos_token_id]
    sequences = list(packed_sequences(model, docs, seq_len=5))
    bos = model.tokenizer.bos_token_id
    assert all(s.shape == (5,) and s[0].item() == bos for s in sequences)
    body = [t for s in sequences for t in s[1:].tolist()]
    assert body == stream[: len(body)] and len(stream) - len(body) < 4  # only a partial tail is dropped
    assert len(list(packed_sequences(model, docs, seq_len=5, limit=2))) == 2


def test_batches_stack_sequences():
    sequences = [torch.full((4,), i) for i in range(5)]
    stacked = list(batches(sequences, 2))
    assert [b.shape[0] for b in stacked] == [2, 2, 1]
    assert torch.equal(torch.cat(stacked), torch.stack(sequences))
    with pytest.raises(gl.InputError):
        list(batches(sequences, 0))


def test_packing_rejects_bad_lengths():
    model = tiny_model("llama")
    with pytest.raises(gl.InputError):
        list(packed_sequences(model, ["the cat"], seq_len=1))
    with pytest.raises(gl.InputError, match="context window"):
        list(packed_sequences(model, ["the cat"], seq_len=model.context_length + 1))
