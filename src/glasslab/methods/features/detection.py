"""How well a label predicts where its feature fires, measured on held-out text (a detection score).

Automated-interpretability work scores an explanation by asking a reader to pick out, from held-out
text, the places the feature fires, given only the explanation. glasslab's automatic labels name words
(and, where WordNet finds one, the class those words share), so the reader here is exact and cheap: a
token is predicted to fire the feature when its word is one the label names (or, for a class, any word
of the class, plural or singular). Over every token of a held-out sample this counts, per feature,
predicted-and-fired, predicted and fired, and reports precision, recall and F1 (the score shown).

It measures the label, not the feature: a feature for a context (not a word) gets a low score however
clear its dashboard is, and the score says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ...data import batches, load_corpus, packed_sequences
from ...model.model import Model
from ...progress import progress
from .basis import FeatureDictionary, basis_of
from .concepts import normalise, wordnet
from .encode import stop_after


@dataclass(frozen=True)
class Detection:
    precision: float
    recall: float
    f1: float
    fired: int  # held-out tokens where the feature fires
    predicted: int  # held-out tokens whose word the label names
    tokens: int
    corpus: str

    def to_json(self) -> dict:
        return {
            "f1": round(self.f1, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "fired": self.fired,
            "predicted": self.predicted,
            "tokens": self.tokens,
            "corpus": self.corpus,
        }


def vocabulary_words(model: Model) -> list[str]:
    """Each token id's word as labels write it (``concepts.normalise``)."""
    return [normalise(t or "") for t in model.tokenizer.convert_ids_to_tokens(list(range(model.vocab_size)))]


def base_forms(words: list[str]) -> list[str]:
    """``words`` with alphabetic ones replaced by their WordNet noun base form where one exists ("doctors" ->
    "doctor"); unchanged without WordNet."""
    reader = wordnet()
    if reader is None:
        return words
    base = {w: reader.morphy(w, "n") or w for w in set(words) if w.isalpha() and len(w) > 2}
    return [base.get(w, w) for w in words]


def detection_scores(
    model: Model,
    sae: FeatureDictionary,
    word_sets: Mapping[int, set[str]],
    *,
    corpus: str = "builtin",
    split: str = "test",
    sequences: int = 256,
    seq_len: int = 128,
    batch_size: int = 16,
) -> dict[int, Detection]:
    """Per feature of ``word_sets`` (feature -> the words its label names), the detection score on
    ``sequences`` packed sequences of ``corpus``'s ``split`` (BOS positions left out)."""
    features = sorted(f for f, words in word_sets.items() if words)
    if not features:
        return {}
    exact = vocabulary_words(model)
    lemma = base_forms(exact)
    ids_of: dict[str, list[int]] = {}
    for i, (word, base) in enumerate(zip(exact, lemma, strict=True)):
        ids_of.setdefault(word, []).append(i)
        if base != word:
            ids_of.setdefault(base, []).append(i)
    width, basis = sae.d_sae, basis_of(sae)
    keys = []  # token id * d_sae + feature, for every (token, feature) the label predicts
    for feature in features:
        ids = {i for word in word_sets[feature] for i in ids_of.get(word, ())}
        keys.extend(i * width + feature for i in ids)
    member = torch.tensor(sorted(set(keys)), dtype=torch.long)
    index = torch.tensor(features)
    column = torch.full((width,), -1, dtype=torch.long)
    column[index] = torch.arange(len(features))
    hits = torch.zeros(len(features), dtype=torch.long)
    fired = torch.zeros(len(features), dtype=torch.long)
    token_counts = torch.zeros(model.vocab_size, dtype=torch.long)
    source = load_corpus(corpus, split=split)  # type: ignore[arg-type]
    skip = 0 if model.tokenizer.bos_token_id is None else 1
    tokens = 0
    stream = batches(packed_sequences(model, source, seq_len, limit=sequences), batch_size)
    for batch in progress(stream, total=math.ceil(sequences / batch_size), description="scoring labels"):
        with torch.inference_mode():
            act = model.run(batch, cache=[sae.hook], **stop_after(model, sae.hook)).cache[sae.hook]
            acts = basis.values(act)[:, skip:, index.to(sae.W_enc.device)]
        ids = batch[:, skip:].reshape(-1)
        on = acts.reshape(len(ids), len(features)).cpu() > 0
        token_counts += torch.bincount(ids, minlength=model.vocab_size)[: model.vocab_size]
        tokens += len(ids)
        fired += on.sum(0)
        row, col = on.nonzero(as_tuple=True)
        found = torch.isin(ids[row] * width + index[col], member)
        hits += torch.bincount(col[found], minlength=len(features))
    predicted = torch.zeros(len(features), dtype=torch.long)
    if len(member):
        owner = column[member % width]
        predicted.index_add_(0, owner, token_counts[member // width])
    described = source.describe()
    scores = {}
    for j, feature in enumerate(features):
        tp, pos, pred = int(hits[j]), int(fired[j]), int(predicted[j])
        precision = tp / pred if pred else 0.0
        recall = tp / pos if pos else 0.0
        f1 = 2 * tp / (pos + pred) if pos + pred else 0.0
        scores[feature] = Detection(precision, recall, f1, pos, pred, tokens, described)
    return scores
