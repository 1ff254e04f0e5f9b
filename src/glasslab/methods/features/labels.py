"""Automatic feature labels and precomputed dashboards, built offline from what a feature reads and writes.

For every feature of an SAE, one streamed scan over a corpus (``scan.scan_features``) finds the sequences
where it fires most. From them:

- the label names the words it fires on there (most frequent first) and, where WordNet finds a class
  most of them share, the class ("health professional"); it quotes a few tokens of its strongest context
  with the firing token in brackets, and lists the tokens its decoder direction promotes through the
  unembedding, among tokens that occur in the corpus (``dashboard.decoder_logit_effects``);
- each label carries a detection score measured on the corpus's held-out split (``detection``): how well
  "fires where the label's words are" predicts where the feature fires;
- the same scan, with the decoder's token effects, is kept as the SAE's atlas (``atlas``), so its
  dashboards open without running the model.

Labels are marked ``source: "auto"`` and carry the feature's density, so nobody mistakes them for a human
reading. A feature that fired in training but not in the scanned sample is labelled from its decoder
alone and says so. Dead features (never active in training nor in the scan) get no label.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ...cluster import ClusterSpec
from ...dictionaries import SAE
from ...dictionaries.files import SPARSITY_FILE, load_sae_folder, save_sae, sparsity_density
from ...dictionaries.fit import check_fits
from ...dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json, read_labels, write_labels
from ...model.model import Model
from .atlas import ATLAS_FILE, Atlas, atlas_bytes, make_atlas, write_atlas
from .basis import FeatureDictionary
from .concepts import normalise, shared_concept
from .dashboard import decoder_logit_effects
from .detection import detection_scores
from .scan import FeatureScan, scan_features

_WINDOW = 8  # tokens of context kept either side of the firing token (the dashboards' window)
_QUOTE = (3, 2)  # of which the label quotes this many before and after
_NAMED = 5  # words a label names (and its detection score tests)
_COMMON = 3  # occurrences in the scanned text for a token to be listed as promoted or suppressed


@dataclass(frozen=True)
class Described:
    labels: dict[int, FeatureLabel]
    atlas: Atlas
    provenance: dict

    def summary(self) -> dict:
        """What was precomputed, for the CLI and the workbench's job."""
        return {
            "kind": "sae_precompute",
            "corpus": self.atlas.corpus,
            "sequences": self.atlas.sequences,
            "tokens": self.atlas.tokens,
            "dashboards": len(self.atlas.features),
            "labels": len(self.labels),
            "concepts": sum("concept" in entry.extra for entry in self.labels.values()),
        }


def describe_features(
    model: Model,
    sae: FeatureDictionary,
    *,
    training_density: torch.Tensor | None = None,
    corpus: str = "builtin",
    sequences: int = 1024,
    seq_len: int | None = None,
    contexts: int = 20,
    held_out_sequences: int = 256,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    on_scanned: Callable[[int], None] | None = None,
) -> Described:
    """Labels (with detection scores) for every feature that fires in the scan or had
    ``training_density > 0``, and the atlas of every feature that fired: ``sequences`` packed sequences of
    ``seq_len`` tokens (default: the SAE's training context) of ``corpus``'s train split, scored on
    ``held_out_sequences`` of its test split. ``cluster``/``workers``/``worker_gpus`` run the scan on Ray
    (``scan_features``); ``on_scanned(sequences)`` follows each part of the scan done."""
    seq_len = seq_len or min(sae.cfg.context_size or 128, model.context_length or 128)
    scan = scan_features(
        model,
        sae,
        None,
        corpus=corpus,
        split="train",
        sequences=sequences,
        seq_len=seq_len,
        k=contexts,
        window=_WINDOW,
        cluster=cluster,
        workers=workers,
        worker_gpus=worker_gpus,
        on_unit=on_scanned,
    )
    common = scan.token_counts >= _COMMON  # tokens the corpus really uses, not stray pieces seen once
    common[[i for i in model.tokenizer.all_special_ids if i < len(common)]] = False  # <bos>, <eos>, <pad>
    promotes, suppresses, note = decoder_logit_effects(model, sae, scan.features, 10, allowed=common)
    atlas = make_atlas(scan, sae, promotes, suppresses, note, seq_len=seq_len)
    labels, word_sets = _labels(model, scan, training_density, promotes)
    scores = detection_scores(
        model, sae, word_sets, corpus=corpus, split="test", sequences=held_out_sequences, seq_len=seq_len
    )
    for feature, score in scores.items():
        labels[feature].extra["detection"] = score.to_json()
    provenance = {
        "generated_by": "glasslab.methods.features.labels.describe_features",
        "corpus": corpus,
        "scanned_sequences": scan.sequences,
        "seq_len": seq_len,
        "held_out_sequences": held_out_sequences,
    }
    return Described(labels, atlas, provenance)


def auto_labels(model: Model, sae: FeatureDictionary, **options) -> dict[int, FeatureLabel]:
    """The automatic labels alone (``describe_features``' options)."""
    return describe_features(model, sae, **options).labels


def _labels(
    model: Model, scan: FeatureScan, training_density: torch.Tensor | None, promotes: list
) -> tuple[dict[int, FeatureLabel], dict[int, set[str]]]:
    """Each live feature's label and the words it names (for the detection score)."""
    seen = scan.fired > 0
    trained = training_density > 0 if training_density is not None else torch.zeros_like(seen)
    decode = model.tokenizer.decode
    labels: dict[int, FeatureLabel] = {}
    word_sets: dict[int, set[str]] = {}
    for feature in (seen | trained).nonzero().reshape(-1).tolist():
        writes = ", ".join(repr(effect.token) for effect in promotes[feature][:3])
        extra: dict = {
            "density": float(scan.fired[feature]) / max(1, scan.tokens),
            "promotes": [effect.token for effect in promotes[feature][:3]],
        }
        if training_density is not None:
            extra["training_density"] = float(training_density[feature])
        if not seen[feature]:
            text = f"rare (not seen in {scan.tokens:,} scanned tokens); promotes {writes}"
            labels[feature] = FeatureLabel(text, "auto", extra)
            continue
        found = scan.top_values[feature] > float("-inf")
        centres = Counter(decode([t]) for t in scan.window_ids[feature, found, _WINDOW].tolist())
        words = Counter()
        for token, count in centres.items():
            words[normalise(token)] += count
        fires_on = [token for token, _ in centres.most_common(_NAMED)]
        concept = shared_concept(words)
        extra["fires_on"] = fires_on
        extra["words"] = [[w, c] for w, c in words.most_common(12)]
        extra["context"] = _quote(decode, scan.window_ids[feature, 0].tolist())
        extra["contexts"] = [
            _quote(decode, scan.window_ids[feature, j].tolist()) for j in range(min(3, int(found.sum())))
        ]
        named = ", ".join(repr(t) for t in fires_on[:3])
        quote = f"(e.g. “{extra['context'].strip()[:60]}”); promotes {writes}"
        if concept is None:
            labels[feature] = FeatureLabel(f"fires on {named} {quote}", "auto", extra)
            word_sets[feature] = {normalise(t) for t in fires_on}
        else:
            extra["concept"] = concept.name
            extra["concept_synset"] = concept.synset
            extra["concept_coverage"] = round(concept.coverage, 4)
            labels[feature] = FeatureLabel(f"{concept.name}: fires on {named} {quote}", "auto", extra)
            word_sets[feature] = set(concept.members) | {normalise(t) for t in fires_on}
    return labels, word_sets


def _quote(decode, ids: list[int]) -> str:
    """A few tokens around the firing token (in brackets), line breaks shown as \\n."""
    before = decode([i for i in ids[:_WINDOW] if i >= 0][-_QUOTE[0] :])
    after = decode([i for i in ids[_WINDOW + 1 :] if i >= 0][: _QUOTE[1]])
    return f"{before}[{decode([ids[_WINDOW]])}]{after}".replace("\n", "\\n")


def _training_density(folder: Path) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The SAE's training sparsity (log10 density, -10 where never active) and the density it gives."""
    if not (folder / SPARSITY_FILE).is_file():
        return None, None
    sparsity = load_file(folder / SPARSITY_FILE)["sparsity"]
    return sparsity, sparsity_density(sparsity)


def precompute_features(model: Model, sae: SAE, folder: str | os.PathLike, **options) -> Described:
    """Label every feature and precompute every dashboard of the SAE saved in ``folder`` (the store's copy
    of a trained SAE), writing ``labels.json`` and the atlas beside it; labels a person wrote (or fetched)
    are kept. Options as ``describe_features`` (default corpus: the SAE's training corpus)."""
    folder = Path(folder).expanduser()
    check_fits(sae, model)
    _, density = _training_density(folder)
    options.setdefault("corpus", _training_corpus(folder))
    described = describe_features(model, sae, training_density=density, **options)
    kept = {f: entry for f, entry in read_labels(folder, sae.d_sae).items() if entry.source != "auto"}
    write_atlas(folder, described.atlas)
    write_labels(folder, {**described.labels, **kept}, **described.provenance)
    sae.labels_cache = None
    sae.atlas_cache = None
    return described


def _training_corpus(folder: Path) -> str:
    record = folder / "training.json"
    if not record.is_file():
        return "builtin"
    return json.loads(record.read_text(encoding="utf-8")).get("config", {}).get("corpus", "builtin")


def package_sae(
    model: Model,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float16,
    **options,
) -> Path:
    """Copy a trained SAE folder to ``target`` (e.g. ``glasslab/sae/shipped/<name>``) as it ships: weights
    in ``dtype``, its ``training.json`` and sparsity, ``labels.json`` with an automatic label for every
    live feature and the atlas of precomputed dashboards (``describe_features``' options; default corpus:
    the training corpus). Atomic."""
    source = Path(source).expanduser()
    sae = load_sae_folder(source)
    check_fits(sae, model)
    sparsity, density = _training_density(source)
    options.setdefault("corpus", _training_corpus(source))
    described = describe_features(model, sae, training_density=density, **options)
    extra = {
        "training.json": (source / "training.json").read_bytes(),
        LABELS_FILE: labels_json(described.labels, **described.provenance),
        ATLAS_FILE: atlas_bytes(described.atlas),
    }
    return save_sae(sae, target, dtype=dtype, extra_files=extra, sparsity=sparsity)
