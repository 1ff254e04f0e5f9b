"""Automatic feature labels, built offline from what a feature reads and what it writes.

For every live feature of an SAE, one streamed scan over a corpus (``dashboard.scan_features``) finds the
sequences where it fires most; the label names the tokens it fires on there (most frequent first),
quotes a few tokens of its strongest context with the firing token in brackets, and lists the tokens
its decoder direction promotes through the unembedding (``dashboard.decoder_logit_effects``). Labels
are marked ``source: "auto"`` and carry the feature's density, so nobody mistakes them for a human
reading. A feature that fired in training but not in the scanned sample is labelled from its decoder
alone and says so. Dead features (never active in training nor in the scan) get no label.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..model.model import Model
from .dashboard import decoder_logit_effects, scan_features
from .files import SPARSITY_FILE, load_sae_folder, save_sae
from .fit import check_fits
from .labels_file import LABELS_FILE, FeatureLabel, labels_json
from .sae import SAE

_WINDOW = 4  # tokens of context kept either side of the firing token


def auto_labels(
    model: Model,
    sae: SAE,
    *,
    training_density: torch.Tensor | None = None,
    corpus: str = "builtin",
    sequences: int = 256,
    seq_len: int | None = None,
    contexts: int = 8,
) -> dict[int, FeatureLabel]:
    """Labels for every feature that fires in the scan or had ``training_density > 0`` (sequences of
    ``seq_len`` tokens, by default the SAE's training context)."""
    seq_len = seq_len or min(sae.cfg.context_size or 128, model.context_length or 128)
    scan = scan_features(
        model, sae, None, corpus=corpus, split="train", sequences=sequences, seq_len=seq_len, k=contexts, window=_WINDOW
    )
    seen = scan.fired > 0
    trained = training_density > 0 if training_density is not None else torch.zeros_like(seen)
    live = (seen | trained).nonzero().reshape(-1).tolist()
    promotes, _, _ = decoder_logit_effects(model, sae, live, top=3)
    decode = model.tokenizer.decode
    labels: dict[int, FeatureLabel] = {}
    for feature, promoted in zip(live, promotes, strict=True):
        writes = ", ".join(repr(effect.token) for effect in promoted)
        extra = {
            "density": float(scan.fired[feature]) / max(1, scan.tokens),
            "promotes": [effect.token for effect in promoted],
        }
        if training_density is not None:
            extra["training_density"] = float(training_density[feature])
        if not seen[feature]:
            text = f"rare (not seen in {scan.tokens:,} scanned tokens); promotes {writes}"
            labels[feature] = FeatureLabel(text, "auto", extra)
            continue
        found = scan.top_values[feature] > float("-inf")
        centre_ids = scan.window_ids[feature, found, _WINDOW].tolist()
        counts = Counter(centre_ids)
        fires_on = [decode([token]) for token, _ in counts.most_common(3)]
        best = scan.window_ids[feature, 0].tolist()
        before = decode([i for i in best[:_WINDOW] if i >= 0][-3:])
        after = decode([i for i in best[_WINDOW + 1 :] if i >= 0][:2])
        context = f"{before}[{decode([best[_WINDOW]])}]{after}".replace("\n", "\\n")
        extra["fires_on"] = fires_on
        extra["context"] = context
        label = f"fires on {', '.join(repr(t) for t in fires_on)} (e.g. “{context.strip()[:60]}”); promotes {writes}"
        labels[feature] = FeatureLabel(label, "auto", extra)
    return labels


def package_sae(
    model: Model,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float16,
    sequences: int = 256,
) -> Path:
    """Copy a trained SAE folder to ``target`` (e.g. ``glasslab/sae/shipped/<name>``) as it ships: weights
    in ``dtype``, its ``training.json`` and sparsity, and ``labels.json`` with an automatic label for every
    live feature (``sequences`` packed sequences of its training corpus are scanned). Atomic."""
    source = Path(source).expanduser()
    sae = load_sae_folder(source)
    check_fits(sae, model)
    training = json.loads((source / "training.json").read_text(encoding="utf-8"))
    sparsity = load_file(source / SPARSITY_FILE)["sparsity"] if (source / SPARSITY_FILE).is_file() else None
    density = None
    if sparsity is not None:  # log10 density, -10 where a feature never fired in training
        density = torch.where(sparsity <= -10, 0.0, 10 ** sparsity.double())
    corpus = training.get("config", {}).get("corpus", "builtin")
    labels = auto_labels(model, sae, training_density=density, corpus=corpus, sequences=sequences)
    provenance = {"generated_by": "glasslab.sae.labels.auto_labels", "corpus": corpus, "scanned_sequences": sequences}
    extra = {
        "training.json": (source / "training.json").read_bytes(),
        LABELS_FILE: labels_json(labels, **provenance),
    }
    return save_sae(sae, target, dtype=dtype, extra_files=extra, sparsity=sparsity)
