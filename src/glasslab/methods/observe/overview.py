"""The first screen of an analysis from one forward pass: predictions, every attention pattern, the
logit lens over all layers and per-head direct logit attribution for the top prediction.

One run caches what all four need and skips the full unembedding; the predictions and the lens then
decode only the chosen position. That keeps the whole screen under two plain forward passes even for
a 262k-token vocabulary (see benchmarks/bench_observe.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Figure
from ...views.result import Result
from ..attribute.dla import LogitAttribution, attribution_hooks, logit_attribution
from ..lenses.logit_lens import LogitLens, logit_lens
from .attention import Attention, attention
from .predict import Prediction, predict

OVERVIEW_HOOKS = sorted({*attribution_hooks(neurons=False), "blocks.*.attn.pattern"})


@dataclass(frozen=True)
class Overview(Result):
    kind = "overview"
    json_keys = ("model", "prediction", "attention", "logit_lens", "attribution")

    prediction: Prediction
    attention: Attention
    logit_lens: LogitLens
    attribution: LogitAttribution

    def figure(self) -> Figure:
        parts = [self.prediction.figure(), self.logit_lens.figure(), self.attribution.figure(), self.attention.figure()]
        return Figure(
            f"{self.prediction.model}: overview of {self.prediction.prompt!r}",
            [panel for part in parts for panel in part.panels],
            **explanation("overview"),
        )

    def _json_model(self) -> str:
        return self.prediction.model


def overview(model: Model, prompt: str, *, k: int = 10, position: int = -1, run: Run | None = None) -> Overview:
    """Everything the first screen shows, for ``prompt`` at ``position`` (default: the last token). ``run``:
    a run of ``prompt`` caching at least ``OVERVIEW_HOOKS`` (the server reuses one across positions)."""
    run = run or model.run(prompt, cache=OVERVIEW_HOOKS, logits=False)
    prediction = predict(model, prompt, k=k, position=position, run=run)
    top = prediction.top[0].token_id
    return Overview(
        prediction=prediction,
        attention=attention(model, prompt, query_position=position, run=run),
        logit_lens=logit_lens(model, prompt, k=min(k, 5), positions=[position], candidate_position=position, run=run),
        attribution=logit_attribution(model, prompt, target=top, position=position, top_neurons=0, run=run),
    )
