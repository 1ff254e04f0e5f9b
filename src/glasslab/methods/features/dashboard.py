"""Feature dashboards: where a feature fires over a corpus, how often, and what its output does.

The corpus statistics come from one streamed pass (``scan.scan_features``) that serves any number of
features; sequences go through the model only up to the SAE's layer.

The tokens a feature promotes and suppresses are its decoder direction read through what follows the
hook (the MLP or attention output weights, a post-norm's weight), the final norm's weight and the
unembedding, per unit of activation; the norms' scales are positive factors set by the whole residual
stream and are left out, so the order is exact but the sizes are a direction only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...dictionaries import SAE
from ...dictionaries.labels_file import FeatureLabel, read_labels, write_labels
from ...dictionaries.loading import labels_folder, labels_of, origin_of
from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Result
from .atlas import atlas_of
from .basis import Context, FeatureDictionary, TokenEffect, basis_of, token_effects
from .scan import FeatureScan, contexts_of, scan_features

NEURONPEDIA = "https://www.neuronpedia.org"


# -- one feature's dashboard ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureDashboard(Result):
    kind = "sae_feature_dashboard"
    json_keys = (
        "model",
        "sae",
        "hook",
        "feature",
        "label",
        "neuronpedia",
        "corpus",
        "sequences",
        "tokens",
        "density",
        "mean_activation",
        "max_activation",
        "contexts",
        "histogram",
        "promotes",
        "suppresses",
        "direction_note",
    )

    model: str
    sae: str
    hook: str
    feature: int
    label: FeatureLabel | None
    neuronpedia: str | None  # URL of the feature's page, when the SAE has a Neuronpedia id
    corpus: str
    sequences: int
    tokens: int
    density: float  # fraction of scanned tokens where it fires
    mean_activation: float  # over every scanned token (zeros included)
    max_activation: float
    contexts: list[Context]  # best first
    histogram_edges: list[float]  # len(counts) + 1, of the non-zero activations
    histogram_counts: list[int]
    promotes: list[TokenEffect]
    suppresses: list[TokenEffect]
    direction_note: str  # how promotes/suppresses were read (or why there are none)

    def _json_label(self) -> dict | None:
        return None if self.label is None else self.label.to_json()

    def _json_histogram(self) -> dict[str, list]:
        return {"edges": self.histogram_edges, "counts": self.histogram_counts}

    def figure(self) -> Figure:
        panels: list[Heatmap | Bars] = []
        if self.contexts:
            panels.append(_contexts_heatmap(self.contexts))
        if self.histogram_counts:
            edges = self.histogram_edges
            panels.append(
                Bars(
                    "histogram of its non-zero activations",
                    [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(self.histogram_counts))],
                    [float(c) for c in self.histogram_counts],
                    "tokens",
                )
            )
        for title, effects in (("tokens it promotes", self.promotes), ("tokens it suppresses", self.suppresses)):
            if effects:
                panels.append(Bars(title, [repr(t.token) for t in effects], [t.value for t in effects], "logit/unit"))
        extra = {
            "corpus": self.corpus,
            "density": f"{self.density:.4%} of {self.tokens} tokens",
            "max": f"{self.max_activation:.4g}",
        }
        if self.label is not None:
            extra["label"] = f"{self.label.label} ({self.label.source})"
        if self.neuronpedia:
            extra["Neuronpedia"] = self.neuronpedia
        return Figure(
            f"{self.model}: feature {self.feature} of {self.sae} at {self.hook}",
            panels,
            **explanation("sae_feature_dashboard", direction_note=self.direction_note),
            extra=extra,
        )


def _contexts_heatmap(contexts: list[Context]) -> Heatmap:
    """Rows of context windows aligned on their maximum; cells outside a sequence stay blank at 0."""
    before = max(c.centre for c in contexts)
    after = max(len(c.tokens) - c.centre for c in contexts)
    values, text, hover = [], [], []
    for c in contexts:
        left, right = before - c.centre, after - (len(c.tokens) - c.centre)
        values.append([0.0] * left + c.activations + [0.0] * right)
        text.append([""] * left + [repr(t)[1:-1] for t in c.tokens] + [""] * right)
        tips = [f"{t!r}: {a:.4f}" for t, a in zip(c.tokens, c.activations, strict=True)]
        hover.append([""] * left + tips + [""] * right)
    return Heatmap(
        "top-activating contexts (the max token is in the middle)",
        values,
        [f"{c.activation:.3f}" for c in contexts],
        [str(i - before) for i in range(before + after)],
        row_title="max activation",
        col_title="offset from the max token",
        value_label="activation",
        cell_text=text,
        hover=hover,
    )


def feature_dashboard(
    model: Model,
    sae: FeatureDictionary,
    feature: int,
    *,
    top_tokens: int = 10,
    fetch_label: bool = False,
    precomputed: bool = True,
    **scan_options,
) -> FeatureDashboard:
    """The dashboard of one feature of an SAE or a transcoder (a ``TranscoderSet``'s layer: ``transcoders[L]``;
    see ``feature_dashboards``). ``fetch_label`` asks Neuronpedia for a
    label when none is cached (quietly skipped offline)."""
    return feature_dashboards(
        model, sae, [feature], top_tokens=top_tokens, fetch_label=fetch_label, precomputed=precomputed, **scan_options
    )[0]


def feature_dashboards(
    model: Model,
    sae: FeatureDictionary,
    features: Sequence[int] | None = None,
    *,
    top_tokens: int = 10,
    fetch_label: bool = False,
    precomputed: bool = True,
    **scan_options,
) -> list[FeatureDashboard]:
    """Dashboards of several features (``None``: all). Read from the SAE's precomputed atlas when it has one
    and no scan option asks for other text or more contexts than it kept (``precomputed=False`` forces a
    scan); otherwise from one pass over the corpus (``scan_features``' options; ``None`` values mean its
    defaults)."""
    if top_tokens < 1:
        raise InputError(f"top_tokens must be at least 1, got {top_tokens}")
    options = {name: value for name, value in scan_options.items() if value is not None}
    atlas = atlas_of(sae) if precomputed else None
    stored: dict[int, tuple[list, list]] = {}
    note = ""
    if atlas is not None and set(options) <= {"k", "batch_size"} and options.get("k", 0) <= atlas.contexts:
        chosen = list(range(sae.d_sae)) if features is None else [int(f) for f in features]
        for feature in chosen:
            basis_of(sae).check(feature)
        scan = atlas.scan(chosen)
        if "k" in options:
            scan = dataclasses.replace(scan, top_values=scan.top_values[:, : options["k"]])
        stored, note = atlas.effects(model, chosen, top_tokens), atlas.direction_note
    else:
        scan = scan_features(model, sae, features, **options)
    missing = [f for f in scan.features if f not in stored]  # read live: a scan, or features the atlas lacks
    if missing:
        promotes, suppresses, note = decoder_logit_effects(model, sae, missing, top_tokens)
        stored.update(zip(missing, zip(promotes, suppresses, strict=True), strict=True))
    if fetch_label:
        fetch_neuronpedia_labels(sae, [f for f in scan.features if f not in labels_of(sae)])
    return [_dashboard(model, sae, scan, i, *stored[f], note) for i, f in enumerate(scan.features)]


def _dashboard(
    model: Model,
    sae: FeatureDictionary,
    scan: FeatureScan,
    i: int,
    promotes: list[TokenEffect],
    suppresses: list[TokenEffect],
    note: str,
) -> FeatureDashboard:
    """Row ``i`` of ``scan`` as a dashboard (contexts stop at the first slot where fewer sequences fired)."""
    contexts = contexts_of(scan, i, model.tokenizer.decode)
    counts = scan.counts[i]
    used = int(counts.nonzero().max()) + 1 if bool(counts.any()) else 0
    width = float(scan.bin_width[i])
    feature = scan.features[i]
    return FeatureDashboard(
        model=model.name,
        sae=origin_of(sae).source,
        hook=sae.hook,
        feature=feature,
        label=labels_of(sae).get(feature),
        neuronpedia=neuronpedia_url(sae, feature),
        corpus=scan.corpus,
        sequences=scan.sequences,
        tokens=scan.tokens,
        density=int(scan.fired[i]) / scan.tokens,
        mean_activation=float(scan.total[i]) / scan.tokens,
        max_activation=float(scan.maximum[i]),
        contexts=contexts,
        histogram_edges=[width * b for b in range(used + 1)] if used else [],
        histogram_counts=counts[:used].tolist(),
        promotes=promotes,
        suppresses=suppresses,
        direction_note=note,
    )


# -- what the decoder direction does to the logits ------------------------------------------------------
def decoder_logit_effects(
    model: Model,
    sae: FeatureDictionary,
    features: Sequence[int],
    top: int,
    chunk: int = 256,
    *,
    allowed: torch.Tensor | None = None,
) -> tuple[list[list[TokenEffect]], list[list[TokenEffect]], str]:
    """Per feature, the ``top`` tokens whose logits one unit of it raises and lowers most directly (among
    ``allowed`` tokens, bool [vocab], when given): ``token_effects`` of the dictionary's basis."""
    return token_effects(model, basis_of(sae), features, top, chunk, allowed=allowed)


def residual_writes(model: Model, sae: FeatureDictionary, features: list[int]) -> tuple[torch.Tensor | None, str]:
    """[F, d_model]: what one unit of each feature adds to the residual stream (None where the hook has no
    direct path to it), and a note for the reader."""
    return basis_of(sae).writes(model, features)


# -- Neuronpedia ----------------------------------------------------------------------------------------
def neuronpedia_url(sae: SAE, feature: int) -> str | None:
    np_id = sae.cfg.neuronpedia_id
    return f"{NEURONPEDIA}/{np_id}/{feature}" if np_id else None


def fetch_neuronpedia_labels(
    sae: SAE, features: Sequence[int], *, client=None, timeout: float = 3.0
) -> dict[int, FeatureLabel]:
    """Ask Neuronpedia for the features' explanations and cache them beside the SAE's labels.

    Optional and quiet: offline (``HF_HUB_OFFLINE``/``GLASSLAB_OFFLINE``), without a Neuronpedia id, or
    on any network error it returns what it got (possibly nothing) and never raises."""
    np_id = sae.cfg.neuronpedia_id
    offline = any(
        os.environ.get(v, "0").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "GLASSLAB_OFFLINE")
    )
    if not np_id or not features or (offline and client is None):
        return {}
    import httpx

    fetched: dict[int, FeatureLabel] = {}
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        for feature in features:
            response = client.get(f"{NEURONPEDIA}/api/feature/{np_id}/{feature}")
            if response.status_code != 200:
                continue
            explanations = (response.json() or {}).get("explanations") or []
            text = next((e.get("description") for e in explanations if isinstance(e, dict)), None)
            if isinstance(text, str) and text.strip():
                fetched[int(feature)] = FeatureLabel(text.strip(), "neuronpedia")
    except (httpx.HTTPError, ValueError, AttributeError):
        pass  # offline or an unexpected reply: labels are optional
    finally:
        if own:
            client.close()
    if fetched:
        folder = labels_folder(sae)
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                write_labels(folder, {**read_labels(folder, sae.d_sae), **fetched})
            except OSError:
                pass  # a read-only place: the labels still show this time
        sae.labels_cache = {**labels_of(sae), **fetched}
    return fetched
