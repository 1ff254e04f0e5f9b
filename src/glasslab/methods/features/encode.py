"""Which SAE features fire on a prompt, and how one feature fires along a text.

Both run the model up to the SAE's layer only (``stop_at_layer``), read the SAE's hook and encode it.
``sae_features`` also reports, per token, how much of the activation the SAE misses: the
reconstruction error ``x - decode(encode(x))`` (its norm, its norm relative to ``x``, and the cosine
between ``x`` and the reconstruction). That error is what a splice keeps (``splice.SAESplice``), so
editing features never silently adds the SAE's own error to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...dictionaries import SAE
from ...dictionaries.files import SPARSITY_FILE, sparsity_density
from ...dictionaries.labels_file import FeatureLabel
from ...dictionaries.loading import labels_of, origin_of
from ...errors import InputError
from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result

MAX_ROWS = 30  # features drawn in the prompt heatmap


@dataclass(frozen=True)
class FeatureScore(Record):
    feature: int
    activation: float
    label: str | None = None
    density: float | None = None  # share of tokens it fires on (labels.json, else training); None: unknown
    detection: float | None = None  # the label's detection score (F1 on held-out text), when it was measured


@dataclass(frozen=True)
class TokenFeatures(Record):
    """One token: its strongest features, how many fire (L0), and the SAE's reconstruction error there."""

    json_keys = ("position", "token", "l0", "error_norm", "relative_error", "cosine", "top", "dense")

    position: int
    token: str
    top: list[FeatureScore]
    l0: int
    error_norm: float  # |x - reconstruction|
    relative_error: float  # |x - reconstruction| / |x|
    cosine: float  # cosine(x, reconstruction)
    dense: list[FeatureScore] = field(default_factory=list)  # dense features left out of ``top`` (max_density)


@dataclass(frozen=True)
class FeatureActivations(Result):
    kind = "sae_features"
    json_keys = ("model", "sae", "hook", "prompt", "max_density", "tokens")

    model: str
    sae: str
    hook: str
    prompt: str
    tokens: list[TokenFeatures]
    max_density: float | None = None  # features denser than this are in ``dense``, not ``top``

    def features_shown(self) -> list[int]:
        """The features in the heatmap: every token's top ones, strongest first, at most ``MAX_ROWS``."""
        best: dict[int, float] = {}
        for token in self.tokens:
            for score in token.top:
                best[score.feature] = max(best.get(score.feature, 0.0), score.activation)
        return sorted(best, key=lambda f: -best[f])[:MAX_ROWS]

    def figure(self) -> Figure:
        shown = self.features_shown()
        labels = {s.feature: s.label for t in self.tokens for s in t.top}
        values = [[next((s.activation for s in t.top if s.feature == f), 0.0) for t in self.tokens] for f in shown]
        columns = [f"{t.position} {t.token!r}" for t in self.tokens]
        panels: list[Heatmap | Bars] = []
        if shown:
            panels.append(
                Heatmap(
                    "strongest features at each token",
                    values,
                    [f"F{f}" + (f" {labels[f]}" if labels.get(f) else "") for f in shown],
                    columns,
                    row_title="feature",
                    col_title="token",
                    value_label="activation (0: not among that token's top features)",
                    cell_text=[[f"{v:.1f}" if v else "" for v in row] for row in values],
                )
            )
        panels.append(
            Bars(
                "reconstruction error per token (|error| / |activation|)",
                columns,
                [t.relative_error for t in self.tokens],
                "relative error",
                hover=[
                    f"{t.token!r}: L0 {t.l0}, |error| {t.error_norm:.3g}, cosine {t.cosine:.3f}" for t in self.tokens
                ],
            )
        )
        return Figure(
            f"{self.model}: SAE features at {self.hook} for {self.prompt!r}",
            panels,
            **explanation("sae_features"),
            extra={"sae": self.sae, "tokens": str(len(self.tokens))},
        )


@dataclass(frozen=True)
class FeatureTrace(Result):
    """One feature's activation on every token of a text."""

    kind = "sae_feature_trace"
    json_keys = (
        "model",
        "sae",
        "hook",
        "feature",
        "label",
        "text",
        "tokens",
        "activations",
        "max_activation",
        "fires_on",
    )

    model: str
    sae: str
    hook: str
    feature: int
    label: str | None
    text: str
    tokens: list[str]
    activations: list[float]

    def _json_max_activation(self) -> float:
        return max(self.activations)

    def _json_fires_on(self) -> int:
        return sum(a > 0 for a in self.activations)

    def figure(self) -> Figure:
        name = f"feature {self.feature}" + (f" ({self.label})" if self.label else "")
        return Figure(
            f"{self.model}: {name} at {self.hook}",
            [
                Heatmap(
                    "activation at each token",
                    [self.activations],
                    [f"F{self.feature}"],
                    [f"{i} {t!r}" for i, t in enumerate(self.tokens)],
                    col_title="token",
                    value_label="activation",
                    cell_text=[[repr(t)[1:-1] for t in self.tokens]],
                    hover=[[f"{t!r}: {a:.4f}" for t, a in zip(self.tokens, self.activations, strict=True)]],
                )
            ],
            **explanation("sae_feature_trace", name=name),
            extra={"sae": self.sae, "max": f"{max(self.activations):.4f}"},
        )


def hook_activations(model: Model, sae: SAE, prompt: str | torch.Tensor, run: Run | None = None) -> torch.Tensor:
    """[batch, pos, d_in]: the SAE's input on ``prompt``, from ``run`` if it cached the hook, else from a
    forward pass stopped right after the SAE's layer."""
    if run is not None and sae.hook in run.cache:
        act = run.cache[sae.hook]
    else:
        act = model.run(prompt, cache=[sae.hook], **stop_after(model, sae.hook)).cache[sae.hook]
    return sae.read(act).to(sae.W_enc.device)


def stop_after(model: Model, hook: str) -> dict:
    """``model.run`` options computing ``hook`` and nothing after it."""
    layer = model.hook_spec(hook).layer
    if layer is not None:
        return {"stop_at_layer": layer + 1}
    return {"stop_at_layer": 0} if hook == "embed" else {"logits": False}


def sae_features(
    model: Model,
    sae: SAE,
    prompt: str,
    *,
    top: int = 5,
    run: Run | None = None,
    max_density: float | None = None,
) -> FeatureActivations:
    """The ``top`` strongest features at every token of ``prompt``, with the reconstruction error there.

    With ``max_density``, features known to fire on more than that share of tokens (``feature_densities``)
    are set apart: a token's ``top`` holds the strongest other features, and its ``dense`` the dense ones
    that were among its ``top`` strongest overall, so a reader can hide always-on features and say how many.
    """
    if not 1 <= top <= 100:
        raise InputError(f"top must be in 1..100, got {top}")
    if max_density is not None and not 0.0 <= max_density <= 1.0:
        raise InputError(f"max_density is a share of tokens, in 0..1; got {max_density}")
    labels = labels_of(sae)
    density = feature_densities(sae)
    with torch.inference_mode():
        x = hook_activations(model, sae, prompt, run)[0].float()
        features = sae.encode(x)
        error = x - sae.decode(features, like=x)
        reconstruction = x - error
    k = min(top, sae.d_sae)
    values, indices = torch.topk(features, k, dim=-1)
    dense = density > max_density if max_density is not None else torch.zeros(sae.d_sae, dtype=torch.bool)
    kept_values, kept_indices = values, indices
    if max_density is not None:
        kept_values, kept_indices = torch.topk(features.masked_fill(dense.to(features.device), -torch.inf), k, dim=-1)

    def scores(vs: torch.Tensor, ids: torch.Tensor, want_dense: bool | None = None) -> list[FeatureScore]:
        pairs = [(int(i), float(v)) for v, i in zip(vs.tolist(), ids.tolist(), strict=True) if v > 0]
        return [
            FeatureScore(
                i,
                v,
                _label(labels.get(i)),
                None if torch.isnan(density[i]) else float(density[i]),
                _detection(labels.get(i)),
            )
            for i, v in pairs
            if want_dense is None or bool(dense[i]) == want_dense
        ]

    tokens = model.to_str_tokens(prompt)
    rows = []
    for p, token in enumerate(tokens):
        norm = float(x[p].norm())
        rows.append(
            TokenFeatures(
                position=p,
                token=token,
                top=scores(kept_values[p], kept_indices[p]),
                l0=int((features[p] > 0).sum()),
                error_norm=float(error[p].norm()),
                relative_error=float(error[p].norm()) / max(norm, 1e-12),
                cosine=float(torch.nn.functional.cosine_similarity(x[p], reconstruction[p], dim=0)),
                dense=scores(values[p], indices[p], want_dense=True),
            )
        )
    return FeatureActivations(model.name, origin_of(sae).source, sae.hook, prompt, rows, max_density)


def feature_densities(sae: SAE) -> torch.Tensor:
    """[d_sae] float64: the share of tokens each feature fires on, NaN where unknown. The ``density`` recorded
    with its label (a corpus scan) wins; else the SAE's training sparsity (``sparsity.safetensors``)."""
    labels = labels_of(sae)
    cached = getattr(sae, "density_cache", None)
    if cached is not None and cached[0] is labels:
        return cached[1]
    density = _training_density(sae).clone()
    recorded = [(f, e.extra.get("density")) for f, e in labels.items()]
    recorded = [(f, float(d)) for f, d in recorded if isinstance(d, int | float) and not isinstance(d, bool)]
    if recorded:
        at, values = zip(*recorded, strict=True)
        density[list(at)] = torch.tensor(values, dtype=torch.float64)
    sae.density_cache = (labels, density)
    return density


def _training_density(sae: SAE) -> torch.Tensor:
    """Density from the training sparsity SAELens writes (log10 density, -10 for never); NaN without one."""
    folder = origin_of(sae).folder
    path = None if folder is None else folder / SPARSITY_FILE
    density = torch.full((sae.d_sae,), torch.nan, dtype=torch.float64)
    if path is None or not path.is_file():
        return density
    try:
        sparsity = load_file(path).get("sparsity")
    except (OSError, SafetensorError):
        raise InputError(f"'{path}' is not a readable sparsity file; delete it or save the SAE again") from None
    if sparsity is None or tuple(sparsity.shape) != (sae.d_sae,):
        raise InputError(f"'{path}' holds no 'sparsity' of {sae.d_sae} features; delete it or save the SAE again")
    return sparsity_density(sparsity)


def feature_activations(model: Model, sae: SAE, feature: int, text: str, *, run: Run | None = None) -> FeatureTrace:
    """Feature ``feature``'s activation on every token of ``text``."""
    check_feature(sae, feature)
    with torch.inference_mode():
        values = sae.encode(hook_activations(model, sae, text, run)[0].float())[:, feature]
    return FeatureTrace(
        model=model.name,
        sae=origin_of(sae).source,
        hook=sae.hook,
        feature=feature,
        label=_label(labels_of(sae).get(feature)),
        text=text,
        tokens=model.to_str_tokens(text),
        activations=values.tolist(),
    )


def check_feature(sae: SAE, feature: int) -> None:
    if not 0 <= feature < sae.d_sae:
        raise InputError(f"feature {feature} is out of range for this SAE (valid: 0..{sae.d_sae - 1})")


def _label(entry: FeatureLabel | None) -> str | None:
    return None if entry is None else entry.label


def _detection(entry: FeatureLabel | None) -> float | None:
    score = (entry.extra.get("detection") or {}).get("f1") if entry is not None else None
    return float(score) if isinstance(score, int | float) else None
