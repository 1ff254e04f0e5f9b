"""Find SAE features by words or by meaning, offline, over their labels.

Every labelled feature is scored twice and the scores are added:

- **lexical**: each query word (lower-cased, stemmed by a small suffix rule so 'names', 'named' and 'naming'
  meet, while 'care' and 'car' do not) is looked up in the feature's label fields. A hit counts by where it
  is: a shared concept or one of the words the feature fires on (``concept``, ``words``, weighted by how
  often it fires on it) above the tokens of the label's ``fires_on``, above the label's text, above its
  quoted contexts, above the tokens it promotes (an automatic label's text only restates those fields and is
  skipped); the same word counts a little more than another word of the same stem ('past', 'pasting'). The
  feature's lexical score is the mean over query words of each word's best hit (1 at most).
- **meaning**: the model's own input-embedding matrix serves as a word-embedding space (no download, no other
  model). The query is the mean of its words' embeddings, a feature the count-weighted mean of the words it
  fires on (and its ``concept``); the score is their cosine above a noise floor (``MEANING_FLOOR``), rescaled to
  0..1. Embeddings are centred on the vocabulary's mean first: raw token embeddings share one large common
  direction that makes every cosine look alike.

The rule stemmer is glasslab's own, not nltk's, so a search gives the same answer whether or not nltk is
installed. The per-feature vectors are built once per SAE and labels (kept on the SAE beside its labels), so
later searches cost one matrix-vector product.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from ...dictionaries import SAE
from ...dictionaries.labels_file import FeatureLabel
from ...dictionaries.loading import labels_of, origin_of
from ...errors import InputError
from ...model.model import Model
from ...model.offload import onloaded
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Record, Result

MAX_QUERY_CHARS = 200
DENSE_ABOVE = 0.1  # exclude_dense skips features firing on more than this fraction of tokens
# How much a hit counts by the field it is in: what the feature fires on above where it was seen, and what it
# writes (``promotes``: tokens its decoder pushes up) least.
FIELD_WEIGHTS = {
    "concept": 1.0,
    "words": 1.0,
    "fires_on": 0.8,
    "label": 0.6,
    "contexts": 0.25,
    "context": 0.25,
    "promotes": 0.3,
}
STEM_FACTOR = 0.9  # a label word that only shares the query word's stem
MEANING_WEIGHT = 1.0
# Cosines up to this are noise: on Gemma 3 270M, 1% of the vocabulary's tokens reach 0.24-0.31 with any query
# word ('medical' and 'logical' share 0.34 by spelling), while ' doctor' reaches 0.57 with 'medical'.
MEANING_FLOOR = 0.3
_STOP = "a an and are as at be by for from in into is it its of on or that the this to was were with"
STOPWORDS = frozenset(_STOP.split(" "))
_WORD = re.compile(r"[^\W_]+")


def stems(word: str) -> tuple[str, ...]:
    """The forms a word is matched by, shared by queries and labels: plural, -ing and -ed endings removed, with
    the silent 'e' they may have dropped ('named' gives 'nam' and 'name'), so 'names', 'named', 'naming' and
    'name' meet while 'care' and 'car' stay apart. Short words are left alone. The first form is the main one."""
    w = word.lower()
    for suffix, replacement in (("ies", "y"), ("ied", "y")):
        if w.endswith(suffix) and len(w) > 4:
            return (w[: -len(suffix)] + replacement,)
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            base = w[: -len(suffix)]
            if base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run, stopped -> stop
            return (base, base + "e")
    if w.endswith("es") and not w.endswith("ss") and len(w) > 4:
        return (w[:-1], w[:-2])  # names -> name, boxes -> box
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return (w[:-1],)
    return (w,)


@dataclass(frozen=True)
class SearchHit(Record):
    feature: int
    label: str
    source: str
    score: float  # lexical + meaning
    lexical: float  # 0..1: how well the query's words appear in the label fields
    meaning: float  # 0..1: cosine of the query and the feature's words in the model's embedding space
    matched: list[str]  # why: "words: medical", "meaning: ' doctor' 0.41"
    density: float | None


@dataclass(frozen=True)
class FeatureSearch(Result):
    kind = "sae_feature_search"

    model: str
    sae: str
    hook: str
    query: str
    terms: list[str]  # the query's words that were looked up (stop words left out)
    searched: int  # labelled features considered
    hits: list[SearchHit]

    def figure(self) -> Figure:
        return Figure(
            f"{self.model}: features of {self.sae} matching {self.query!r}",
            [
                Bars(
                    "best matches (score = words + meaning)",
                    [f"F{h.feature} {h.label[:80]}" for h in self.hits],
                    [h.score for h in self.hits],
                    "score",
                    hover=[
                        f"words {h.lexical:.2f}, meaning {h.meaning:.2f}; {'; '.join(h.matched)}" for h in self.hits
                    ],
                )
            ],
            **explanation("sae_feature_search", sae=self.sae),
            extra={"sae": self.sae, "searched": f"{self.searched} labelled features"},
        )


def search_features(model: Model, sae: SAE, query: str, *, top: int = 20, exclude_dense: bool = False) -> FeatureSearch:
    """The ``top`` labelled features of ``sae`` best matching ``query`` (words or a short phrase), by words and
    by meaning. ``exclude_dense``: skip features firing on more than ``DENSE_ABOVE`` of tokens."""
    text = query.strip()
    if not text:
        raise InputError("query: give a word or a few words to search for, e.g. 'medical'")
    if len(text) > MAX_QUERY_CHARS:
        raise InputError(f"query is {len(text)} characters; at most {MAX_QUERY_CHARS}")
    if not 1 <= top <= 100:
        raise InputError(f"top must be in 1..100, got {top}")
    labels = labels_of(sae)
    if not labels:
        raise InputError(f"{origin_of(sae).source} has no feature labels to search (its folder has no labels.json)")
    index = _index(model, sae, labels)
    words = _query_words(text)
    lexical, why = index.lexical(words)
    query_vector = _Space(model, index.centre).mean_vector(words)
    meaning = torch.zeros(len(index.rows))
    if query_vector is not None:
        meaning = ((index.vectors @ query_vector - MEANING_FLOOR) / (1 - MEANING_FLOOR)).clamp(min=0)
    score = torch.tensor(lexical) + MEANING_WEIGHT * meaning
    if exclude_dense:
        score[torch.tensor([d is not None and d > DENSE_ABOVE for d in index.density])] = float("-inf")
    order = torch.argsort(score, descending=True, stable=True)[:top].tolist()
    hits = []
    for row in order:
        if not score[row] > 0:
            break  # nothing matched from here on (or a dense feature left out)
        reasons = list(why.get(row, []))
        if query_vector is not None and float(meaning[row]) > 0:
            reasons.append(index.nearest_word(row, query_vector))
        feature = index.rows[row]
        entry = labels[feature]
        hits.append(
            SearchHit(
                feature,
                entry.label,
                entry.source,
                float(score[row]),
                lexical[row],
                float(meaning[row]),
                reasons,
                index.density[row],
            )
        )
    return FeatureSearch(model.name, origin_of(sae).source, sae.hook, text, words, len(index.rows), hits)


def _query_words(text: str) -> list[str]:
    """The query's words without stop words (all of them if nothing else is left; the whole text when it has
    no letters or digits, e.g. '(' to find a punctuation feature)."""
    words = _WORD.findall(text.lower())
    kept = [w for w in words if w not in STOPWORDS]
    return kept or words or [text.lower()]


def _fields(entry: FeatureLabel) -> dict[str, list[tuple[str, float]]]:
    """The label's searchable texts by field, each with its weight within the field (0..1). An automatic
    label's prose only restates its fields, so it is searched only when those fields are missing."""
    extra = entry.extra
    fields: dict[str, list[tuple[str, float]]] = {}
    if entry.source != "auto" or not (extra.get("fires_on") or extra.get("words")):
        fields["label"] = [(entry.label, 1.0)]
    if isinstance(extra.get("concept"), str):
        fields["concept"] = [(extra["concept"], 1.0)]
    words = feature_words(entry)
    if words and isinstance(extra.get("words"), list):
        most = max(count for _, count in words)
        fields["words"] = [(word, 0.7 + 0.3 * count / most) for word, count in words]
    for name in ("fires_on", "contexts", "promotes"):
        if isinstance(extra.get(name), list):
            fields[name] = [(text, 1.0) for text in extra[name] if isinstance(text, str)]
    if isinstance(extra.get("context"), str):
        fields["context"] = [(extra["context"], 1.0)]
    return fields


def feature_words(entry: FeatureLabel) -> list[tuple[str, float]]:
    """What the feature fires on, with counts: ``words`` ([word, count] pairs) when the label has them, else its
    ``fires_on`` tokens (count 1 each); the shared ``concept``, if any, counts as much as its commonest word."""
    extra = entry.extra
    words: list[tuple[str, float]] = []
    for item in extra.get("words") or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
            if isinstance(item[1], int | float) and item[1] > 0:
                words.append((item[0], float(item[1])))
        elif isinstance(item, str):
            words.append((item, 1.0))
    if not words:
        words = [(token, 1.0) for token in extra.get("fires_on") or [] if isinstance(token, str)]
    words = [(word.strip(), count) for word, count in words if word.strip()]
    if words and isinstance(extra.get("concept"), str):
        words.append((extra["concept"], max(count for _, count in words)))
    return words


class _Space:
    """The model's input embeddings as a word space: a word's vector is the mean of its tokens' embeddings,
    written with and without a leading space, centred on the vocabulary's mean and of unit length."""

    def __init__(self, model: Model, centre: torch.Tensor | None = None) -> None:
        self.tokenizer = model.tokenizer
        embedding = model.module(model.arch.embed)
        self.table = onloaded(embedding, "weight", embedding.weight).detach()  # read from disk/CPU if offloaded
        self.centre = self.table.mean(0, dtype=torch.float32).cpu() if centre is None else centre
        self.skip = set(model.tokenizer.all_special_ids)

    def vectors(self, words: list[str]) -> torch.Tensor:
        """[len(words), d]: unit vectors (zero for a word with no ordinary token)."""
        variants = [v for w in words for v in (" " + w, w)]
        ids = self.tokenizer(variants, add_special_tokens=False)["input_ids"] if variants else []
        flat, owner, weight = [], [], []
        for i in range(len(words)):
            pieces = [[t for t in ids[2 * i + j] if t not in self.skip] for j in (0, 1)]
            pieces = [p for p in pieces if p]
            for piece in pieces:
                flat += piece
                owner += [i] * len(piece)
                weight += [1.0 / (len(piece) * len(pieces))] * len(piece)
        out = torch.zeros(len(words), self.centre.numel())
        if flat:
            rows = self.table[torch.tensor(flat, device=self.table.device)].float().cpu() - self.centre
            out.index_add_(0, torch.tensor(owner), rows * torch.tensor(weight)[:, None])
        return torch.nn.functional.normalize(out, dim=-1)

    def mean_vector(self, words: list[str]) -> torch.Tensor | None:
        """The unit mean of ``words``' vectors, or None when none of them has an ordinary token."""
        found = self.vectors(words)
        found = found[found.norm(dim=-1) > 0]
        return torch.nn.functional.normalize(found.mean(0), dim=0) if len(found) else None


class _Index:
    """What a search reads, built once per (SAE, labels, model): an inverted index from stems to features and
    one unit vector per feature (zero where the label names no words)."""

    def __init__(self, model: Model, labels: dict[int, FeatureLabel], key: tuple) -> None:
        self.labels, self.key = labels, key
        self.rows = sorted(labels)
        self.density: list[float | None] = [_density(labels[f]) for f in self.rows]
        # form -> (row, weight, field, the label's word)
        self.postings: dict[str, list[tuple[int, float, str, str]]] = defaultdict(list)
        for row, feature in enumerate(self.rows):
            best: dict[tuple[str, str], tuple[float, str]] = {}  # (form, word) -> (weight, field)
            for field, texts in _fields(labels[feature]).items():
                for text, inner in texts:
                    found = _WORD.findall(text.lower())
                    keys = [(form, w) for w in found for form in stems(w)] or [(text.strip().lower(),) * 2]
                    for key in keys:
                        weight = FIELD_WEIGHTS[field] * inner
                        if weight > best.get(key, (0.0, ""))[0]:
                            best[key] = (weight, field)
            for (form, word), (weight, field) in best.items():
                self.postings[form].append((row, weight, field, word))
        space = _Space(model)
        self.centre = space.centre  # kept, not the model's embeddings: a cached SAE must not hold the model
        self.words = [feature_words(labels[f]) for f in self.rows]
        vocabulary = sorted({w for words in self.words for w, _ in words})
        self.word_row = {w: i for i, w in enumerate(vocabulary)}
        self.word_vectors = space.vectors(vocabulary)
        vectors = torch.zeros(len(self.rows), self.word_vectors.shape[-1])
        for row, words in enumerate(self.words):
            if words:
                weights = torch.tensor([count for _, count in words])
                picked = self.word_vectors[[self.word_row[w] for w, _ in words]]
                vectors[row] = (weights[:, None] * picked).sum(0)
        self.vectors = torch.nn.functional.normalize(vectors, dim=-1)

    def lexical(self, words: list[str]) -> tuple[list[float], dict[int, list[str]]]:
        """Per row, the mean over the query's words of each word's best hit; and for each row with a hit, why."""
        total = [0.0] * len(self.rows)
        why: dict[int, list[str]] = defaultdict(list)
        unique = list(dict.fromkeys(words))
        for query_word in unique:
            best: dict[int, tuple[float, str]] = {}
            for form in stems(query_word):
                for row, weight, field, word in self.postings.get(form, ()):
                    weight *= 1.0 if word == query_word else STEM_FACTOR
                    if weight > best.get(row, (0.0, ""))[0]:
                        best[row] = (weight, f"{field}: {word}")
            for row, (weight, reason) in best.items():
                total[row] += weight / len(unique)
                why[row].append(reason)
        return total, why

    def nearest_word(self, row: int, query: torch.Tensor) -> str:
        """Why a feature is near in meaning: its word closest to the query, with the cosine."""
        words = [w for w, _ in self.words[row]]
        cosines = self.word_vectors[[self.word_row[w] for w in words]] @ query
        best = int(cosines.argmax())
        return f"meaning: {words[best]!r} cos {float(cosines[best]):.2f}"


def _density(entry: FeatureLabel) -> float | None:
    value = entry.extra.get("density", entry.extra.get("training_density"))
    return float(value) if isinstance(value, int | float) else None


def _index(model: Model, sae: SAE, labels: dict[int, FeatureLabel]) -> _Index:
    """The SAE's search index, rebuilt when its labels (a new dict) or the model's embeddings change (an
    offloaded table lies on ``meta``, so its key stays the same between searches)."""
    table = model.module(model.arch.embed).weight
    key = (model.key, table.data_ptr(), tuple(table.shape))
    index = getattr(sae, "search_cache", None)
    if index is None or index.labels is not labels or index.key != key:
        index = _Index(model, labels, key)
        sae.search_cache = index
    return index
