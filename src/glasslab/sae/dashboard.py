"""Feature dashboards: where a feature fires over a corpus, how often, and what its output does.

One streamed pass over the corpus serves any number of features (one, a few, or all of them, as the
labeller of the shipped SAEs needs). Sequences go through the model only up to the SAE's layer, in
batches; per feature the pass keeps, in memory that does not grow with the corpus:

- the ``k`` sequences where it fires most (each sequence counts once, at its maximum; earlier sequences
  win ties), with a window of tokens and activations around the maximum, merged batch by batch;
- a histogram of its non-zero activations whose bins double in width when a larger value arrives
  (pairs of bins merge, so every count stays exact);
- how many tokens it fires on (density) and the sum of its activations.

The tokens a feature promotes and suppresses are its decoder direction read through what follows the
hook (the MLP or attention output weights, a post-norm's weight), the final norm's weight and the
unembedding, per unit of activation; the norms' scales are positive factors set by the whole residual
stream and are left out, so the order is exact but the sizes are a direction only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import batches, load_corpus, packed_sequences
from ..errors import InputError
from ..methods.dla import neuron_out_weights
from ..methods.neurons import Context, TokenEffect, direct_token_effects
from ..model.model import Model
from ..model.norms import norm_params
from ..progress import progress
from ..views.figures import Bars, Figure, Heatmap
from ..views.html import figure_html
from .encode import check_feature, stop_after
from .labels_file import FeatureLabel, read_labels, write_labels
from .loading import labels_folder, labels_of, origin_of
from .sae import SAE

NEURONPEDIA = "https://www.neuronpedia.org"


# -- the scan -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureScan:
    """Everything one pass over a corpus kept, for ``features`` (tensors indexed like ``features``)."""

    corpus: str
    features: list[int]
    sequences: int
    tokens: int  # token positions scanned per feature (BOS left out unless asked)
    top_values: torch.Tensor  # [F, k] the best sequences' maxima, -inf where fewer than k fired
    top_sequence: torch.Tensor  # [F, k] their index in the scan
    top_position: torch.Tensor  # [F, k] where the maximum is
    window_ids: torch.Tensor  # [F, k, 2w+1] token ids around it (-1 outside the sequence)
    window_acts: torch.Tensor  # [F, k, 2w+1] the feature's activation there
    fired: torch.Tensor  # [F] tokens with a non-zero activation
    total: torch.Tensor  # [F] sum of activations
    maximum: torch.Tensor  # [F] largest activation (0 if it never fired)
    counts: torch.Tensor  # [F, bins] histogram of non-zero activations
    bin_width: torch.Tensor  # [F] float64; 0 where the feature never fired


def scan_features(
    model: Model,
    sae: SAE,
    features: Sequence[int] | None = None,
    *,
    corpus: str = "builtin",
    split: str | None = None,
    sequences: int = 64,
    seq_len: int = 64,
    batch_size: int = 16,
    k: int = 10,
    window: int = 8,
    bins: int = 40,
    include_bos: bool = False,
) -> FeatureScan:
    """Stream ``sequences`` packed sequences of ``corpus`` and collect each feature's statistics
    (``features=None``: all of them)."""
    chosen = list(range(sae.d_sae)) if features is None else [int(f) for f in features]
    if not chosen:
        raise InputError("no features given; name at least one feature index")
    for feature in chosen:
        check_feature(sae, feature)
    for name, value, low in (("sequences", sequences, 1), ("k", k, 1), ("window", window, 0), ("bins", bins, 2)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if bins % 2:
        raise InputError(f"bins must be even (bins merge in pairs), got {bins}")
    source = load_corpus(corpus, split=split)  # type: ignore[arg-type]
    skip = 0 if include_bos or model.tokenizer.bos_token_id is None else 1
    if seq_len <= skip:
        raise InputError(f"seq_len must be at least {skip + 1}")
    n, span = len(chosen), 2 * window + 1
    index = torch.tensor(chosen)
    top_values = torch.full((n, k), -math.inf)
    top_sequence = torch.zeros((n, k), dtype=torch.long)
    top_position = torch.zeros((n, k), dtype=torch.long)
    window_ids = torch.full((n, k, span), -1, dtype=torch.long)
    window_acts = torch.zeros((n, k, span))
    fired = torch.zeros(n, dtype=torch.long)
    total = torch.zeros(n, dtype=torch.float64)
    maximum = torch.zeros(n)
    histogram = _Histogram(n, bins)
    scanned = tokens = 0
    stream = batches(packed_sequences(model, source, seq_len, limit=sequences), batch_size)
    options = stop_after(model, sae.hook)
    offsets = torch.arange(-window, window + 1)
    for batch in progress(stream, total=math.ceil(sequences / batch_size), description=f"scanning {sae.hook}"):
        with torch.inference_mode():
            act = model.run(batch, cache=[sae.hook], **options).cache[sae.hook]
            acts = sae.encode(sae.read(act).to(sae.W_enc.device).float())[..., index.to(sae.W_enc.device)]
        acts = acts.float().cpu()  # [b, L, F]
        scored = acts[:, skip:]
        fired += (scored > 0).sum((0, 1))
        total += scored.double().sum((0, 1))
        maximum = torch.maximum(maximum, scored.amax((0, 1)).clamp_min(0))
        tokens += scored.shape[0] * scored.shape[1]
        histogram.add(scored.reshape(-1, n))

        best, where = scored.max(dim=1)  # [b, F]: each sequence's maximum (first occurrence on ties)
        where = where + skip
        b, length = batch.shape
        around = where[..., None] + offsets  # [b, F, span]
        inside = (around >= 0) & (around < length)
        clipped = around.clamp(0, length - 1)
        cand_acts = acts.permute(0, 2, 1).gather(2, clipped) * inside
        cand_ids = batch[:, None, :].expand(b, n, length).gather(2, clipped).masked_fill(~inside, -1)
        values = torch.cat([top_values, best.T.masked_fill(best.T <= 0, -math.inf)], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]  # stable: earlier first
        top_values = values.gather(1, order)
        top_sequence = torch.cat([top_sequence, (scanned + torch.arange(b)).expand(n, b)], 1).gather(1, order)
        top_position = torch.cat([top_position, where.T], 1).gather(1, order)
        pick = order[..., None].expand(n, k, span)
        window_ids = torch.cat([window_ids, cand_ids.permute(1, 0, 2)], 1).gather(1, pick)
        window_acts = torch.cat([window_acts, cand_acts.permute(1, 0, 2)], 1).gather(1, pick)
        scanned += b
    if scanned == 0:
        raise InputError(f"corpus '{source.describe()}' has too little text for one sequence of {seq_len} tokens")
    return FeatureScan(
        corpus=source.describe(),
        features=chosen,
        sequences=scanned,
        tokens=tokens,
        top_values=top_values,
        top_sequence=top_sequence,
        top_position=top_position,
        window_ids=window_ids,
        window_acts=window_acts,
        fired=fired,
        total=total,
        maximum=maximum,
        counts=histogram.counts,
        bin_width=histogram.width,
    )


class _Histogram:
    """Per-feature histograms of positive values over ``[0, bins * width)``; when a value reaches the top,
    neighbouring bins merge in pairs and the width doubles, so counts stay exact in bounded memory."""

    def __init__(self, features: int, bins: int) -> None:
        self.bins = bins
        self.counts = torch.zeros((features, bins), dtype=torch.long)
        self.width = torch.zeros(features, dtype=torch.float64)

    def add(self, values: torch.Tensor) -> None:
        """``values`` [N, F]; only positive entries count."""
        values = values.double()
        top = values.amax(0)
        new = (self.width == 0) & (top > 0)
        # First values: the smallest power-of-two width that puts the maximum inside the range.
        self.width[new] = torch.exp2(torch.floor(torch.log2(top[new] / self.bins)) + 1)
        while True:
            grow = (self.width > 0) & (top >= self.width * self.bins)
            if not grow.any():
                break
            merged = self.counts[grow].view(-1, self.bins // 2, 2).sum(-1)
            self.counts[grow] = torch.cat([merged, torch.zeros_like(merged)], dim=1)
            self.width[grow] *= 2
        positive = values > 0
        safe = torch.where(self.width > 0, self.width, torch.ones_like(self.width))
        bucket = torch.floor(values / safe).long().clamp(0, self.bins - 1)
        self.counts.scatter_add_(1, bucket.T, positive.T.long())


# -- one feature's dashboard ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureDashboard:
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

    def to_dict(self) -> dict:
        def effect(t: TokenEffect) -> dict:
            return {"token": t.token, "token_id": t.token_id, "value": t.value}

        return {
            "kind": "sae_feature_dashboard",
            "model": self.model,
            "sae": self.sae,
            "hook": self.hook,
            "feature": self.feature,
            "label": None if self.label is None else self.label.to_json(),
            "neuronpedia": self.neuronpedia,
            "corpus": self.corpus,
            "sequences": self.sequences,
            "tokens": self.tokens,
            "density": self.density,
            "mean_activation": self.mean_activation,
            "max_activation": self.max_activation,
            "contexts": [
                {
                    "activation": c.activation,
                    "sequence": c.sequence,
                    "position": c.position,
                    "tokens": c.tokens,
                    "activations": c.activations,
                    "centre": c.centre,
                }
                for c in self.contexts
            ],
            "histogram": {"edges": self.histogram_edges, "counts": self.histogram_counts},
            "promotes": [effect(t) for t in self.promotes],
            "suppresses": [effect(t) for t in self.suppresses],
            "direction_note": self.direction_note,
        }

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
            f"{self.model}: feature {self.feature} of the SAE at {self.hook}",
            panels,
            what_you_see="The stretches of the corpus where this feature fires most, how its activations are "
            "spread, how often it fires, and which next tokens its decoder direction pushes up or down.",
            how_to_read="Each context row is one sequence, centred on the token where the feature peaks; colours "
            "show its activation on each token. The histogram counts only tokens where it fires (density says "
            "how rare that is). Promoted/suppressed tokens read the feature's decoder direction through the "
            f"model's final norm weight and unembedding, per unit of activation. {self.direction_note}",
            caveat="Top contexts show when a feature fires most, not everything it does; weaker activations can "
            "matter too. The token lists ignore what later layers do with the feature's output, and a label "
            "(automatic or not) is a summary to check against these contexts, not a fact.",
            extra=extra,
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())


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
    sae: SAE,
    feature: int,
    *,
    corpus: str = "builtin",
    sequences: int = 64,
    seq_len: int = 64,
    batch_size: int = 16,
    k: int = 10,
    window: int = 8,
    bins: int = 40,
    top_tokens: int = 10,
    include_bos: bool = False,
    fetch_label: bool = False,
) -> FeatureDashboard:
    """The dashboard of one feature (see the module docstring). ``fetch_label`` asks Neuronpedia for a
    label when none is cached (quietly skipped offline)."""
    return feature_dashboards(
        model,
        sae,
        [feature],
        corpus=corpus,
        sequences=sequences,
        seq_len=seq_len,
        batch_size=batch_size,
        k=k,
        window=window,
        bins=bins,
        top_tokens=top_tokens,
        include_bos=include_bos,
        fetch_label=fetch_label,
    )[0]


def feature_dashboards(
    model: Model,
    sae: SAE,
    features: Sequence[int] | None = None,
    *,
    top_tokens: int = 10,
    fetch_label: bool = False,
    **scan_options,
) -> list[FeatureDashboard]:
    """Dashboards of several features (``None``: all) from one pass over the corpus."""
    if top_tokens < 1:
        raise InputError(f"top_tokens must be at least 1, got {top_tokens}")
    scan = scan_features(model, sae, features, **scan_options)
    if fetch_label:
        fetch_neuronpedia_labels(sae, [f for f in scan.features if f not in labels_of(sae)])
    labels = labels_of(sae)
    promotes, suppresses, note = decoder_logit_effects(model, sae, scan.features, top_tokens)
    decode = model.tokenizer.decode
    out = []
    for i, feature in enumerate(scan.features):
        contexts = []
        for j in range(scan.top_values.shape[1]):
            value = float(scan.top_values[i, j])
            if value == -math.inf:
                break
            inside = scan.window_ids[i, j] >= 0
            ids = scan.window_ids[i, j][inside].tolist()
            first = int(inside.nonzero()[0])
            span = scan.window_ids.shape[2] // 2
            contexts.append(
                Context(
                    activation=value,
                    sequence=int(scan.top_sequence[i, j]),
                    position=int(scan.top_position[i, j]),
                    tokens=[decode([t]) for t in ids],
                    activations=scan.window_acts[i, j][inside].tolist(),
                    centre=span - first,
                )
            )
        counts = scan.counts[i]
        used = int(counts.nonzero().max()) + 1 if bool(counts.any()) else 0
        width = float(scan.bin_width[i])
        out.append(
            FeatureDashboard(
                model=model.name,
                sae=origin_of(sae).source,
                hook=sae.hook,
                feature=feature,
                label=labels.get(feature),
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
                promotes=promotes[i],
                suppresses=suppresses[i],
                direction_note=note,
            )
        )
    return out


# -- what the decoder direction does to the logits ------------------------------------------------------
def decoder_logit_effects(
    model: Model, sae: SAE, features: Sequence[int], top: int, chunk: int = 256
) -> tuple[list[list[TokenEffect]], list[list[TokenEffect]], str]:
    """Per feature, the ``top`` tokens whose logits one unit of it raises and lowers most directly."""
    writes, note = residual_writes(model, sae, list(features))
    if writes is None:
        return [[] for _ in features], [[] for _ in features], note
    promotes, suppresses = [], []
    for start in range(0, writes.shape[0], chunk):
        rows = direct_token_effects(
            model, writes[start : start + chunk], top, through_final_norm=sae.hook != "ln_final"
        )
        promotes += [up for up, _ in rows]
        suppresses += [down for _, down in rows]
    return promotes, suppresses, note


def residual_writes(model: Model, sae: SAE, features: list[int]) -> tuple[torch.Tensor | None, str]:
    """[F, d_model]: what one unit of each feature adds to the residual stream (None where the hook has no
    direct path to it), and a note for the reader."""
    direction = sae.W_dec[features].detach().float()
    if sae.cfg.architecture in ("topk", "batchtopk") and sae.cfg.rescale_acts_by_decoder_norm:
        direction = direction / sae.W_dec[features].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    spec = model.hook_spec(sae.hook)
    arch = model.arch
    if spec.layout == "resid":
        return direction, ""
    if spec.site == "mlp.post":
        write = direction @ neuron_out_weights(model, spec.layer).detach().float()
        post = arch.post_mlp_norm
    elif spec.site == "attn.z":
        weights = model.output_weights(spec.layer).detach().float()  # [head, d_head, d_model]
        if sae.cfg.hook_head_index is not None:
            write = direction @ weights[sae.cfg.hook_head_index]
        else:
            write = torch.einsum("fhd,hdm->fm", direction.view(len(features), *weights.shape[:2]), weights)
        post = arch.post_attn_norm
    else:
        return None, f"Features at {spec.site} have no direct path to the logits, so no token lists are shown."
    if post is None:
        return write, ""
    weight = norm_params(model.block_module(spec.layer, post)).weight.to(write.device)
    return write * weight, "This model normalises the block's output before adding it, so sizes are a direction only."


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
