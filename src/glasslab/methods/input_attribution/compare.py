"""Several attribution methods on one prompt, side by side, ranked by how faithful each is here.

Every method runs on the same prepared prompt (one target, one baseline, shared gradient at the
input, one cache of evaluated token subsets), then each ranking is scored by deletion/insertion
curves and ERASER comprehensiveness/sufficiency (faithfulness.py). Random token orders (seeded) give
the reference a method must beat: their score is about 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from .faithfulness import LEVELS, MAX_POINTS, Faithfulness, evaluate_all, mean_of, measure
from .prepared import prepare
from .registry import Options, method_names, run_method
from .result import InputAttribution


@dataclass(frozen=True)
class RankedMethod(Record):
    rank: int  # 1 = most faithful on this prompt
    attribution: InputAttribution
    faithfulness: Faithfulness


@dataclass(frozen=True)
class AttributionComparison(Result):
    kind = "attribution_comparison"
    json_keys = (
        "model",
        "prompt",
        "tokens",
        "positions",
        "target",
        "full_value",
        "baseline_value",
        "baseline",
        "ranking",
        "methods",
        "random",
        "random_orders",
        "forward_rows",
        "seconds",
    )

    model: str
    prompt: str
    tokens: list[str]
    positions: list[int]
    target: dict
    full_value: float
    baseline_value: float
    baseline: str
    methods: list[RankedMethod]  # most faithful first
    random: Faithfulness  # mean over random orders
    random_orders: int
    forward_rows: int  # batch rows of model passes in all (forward+backward counted as one)
    seconds: float

    @property
    def ranking(self) -> list[str]:
        return [m.attribution.method for m in self.methods]

    def __getitem__(self, method: str) -> RankedMethod:
        for ranked in self.methods:
            if ranked.attribution.method == method:
                return ranked
        raise InputError(f"'{method}' is not in this comparison (it has {', '.join(self.ranking)})")

    def figure(self) -> Figure:
        token_labels = [f"{p} {self.tokens[p]!r}" for p in self.positions]
        rows, cells, text, hover = [], [], [], []
        for ranked in self.methods:
            a = ranked.attribution
            scale = max((abs(s) for s in a.scores), default=0.0) or 1.0
            rows.append(f"{ranked.rank}. {a.label}")
            cells.append([s / scale for s in a.scores])
            text.append([f"{s:.2g}" for s in a.scores])
            hover.append(
                [
                    f"{a.label} · {t}: {s:+.4g} ({s / scale:+.2f} of its largest)"
                    for t, s in zip(token_labels, a.scores, strict=True)
                ]
            )
        heatmap = Heatmap(
            "each method's scores (scaled to its largest magnitude)",
            cells,
            rows,
            [repr(self.tokens[p]) for p in self.positions],
            row_title="method (most faithful first)",
            col_title="prompt token",
            value_label="score / largest |score|",
            cell_text=text,
            hover=hover,
            diverging=True,
        )
        bar_labels = [m.attribution.label for m in self.methods] + ["random order (reference)"]
        faiths = [m.faithfulness for m in self.methods] + [self.random]
        bars = Bars(
            "faithfulness: insertion AUC - deletion AUC (higher = more faithful)",
            bar_labels,
            [f.score for f in faiths],
            "score (target units)",
            hover=[
                f"{label}: insertion AUC {f.insertion_auc:.3f}, deletion AUC {f.deletion_auc:.3f}, "
                f"comprehensiveness {f.comprehensiveness:.3g}, sufficiency {f.sufficiency:.3g}"
                for label, f in zip(bar_labels, faiths, strict=True)
            ],
        )
        return Figure(
            f"{self.model}: which tokens made it predict {self.target['token']!r}? ({len(self.methods)} methods)",
            [heatmap, bars],
            **explanation("attribution_comparison"),
            extra={
                "target": self.target["description"],
                "f(prompt)": f"{self.full_value:.4g}",
                f"f(baseline '{self.baseline}')": f"{self.baseline_value:.4g}",
                "model rows": str(self.forward_rows),
                "time": f"{self.seconds:.1f} s",
            },
        )

    def _json_random(self) -> dict:
        """The random orders' mean curves; an average of orders has no order of its own."""
        return self.random.to_dict() | {"order": []}


def compare_attributions(
    model: Model,
    prompt: str,
    methods: str | Sequence[str] = "all",
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    kind: str | None = None,
    baseline: str = "pad",
    steps: int = 64,
    rule: str = "gauss_legendre",
    budget: int = 128,
    seed: int = 0,
    window: int = 1,
    levels: Sequence[float] = LEVELS,
    max_points: int = MAX_POINTS,
    random_orders: int = 2,
    batch_size: int | None = None,
) -> AttributionComparison:
    """Run ``methods`` (names, aliases, comma-separated text or ``"all"``) on one prompt and rank them by
    faithfulness (insertion AUC - deletion AUC). Arguments as for ``attribute``; ``levels`` and
    ``max_points`` as for ``faithfulness``; ``random_orders`` random rankings (seeded) form the reference."""
    start = time.perf_counter()
    names = method_names(methods)
    if not 1 <= random_orders <= 64:
        raise InputError(f"random_orders must be in 1..64, got {random_orders}")
    prep = prepare(model, prompt, target=target, versus=versus, kind=kind, baseline=baseline, batch_size=batch_size)
    options = Options(steps, rule, budget, seed, window)
    attributions = [run_method(prep, name, options) for name in names]
    rng = np.random.default_rng(seed)
    rankings = [torch.tensor(a.scores, dtype=torch.float64) for a in attributions]
    rankings += [torch.tensor(rng.permutation(prep.n_players), dtype=torch.float64) for _ in range(random_orders)]
    evaluate_all(prep, rankings, levels=levels, max_points=max_points)  # every curve point in full batches
    measured = [measure(prep, scores, levels=levels, max_points=max_points) for scores in rankings]
    scored = list(zip(attributions, measured[: len(attributions)], strict=True))
    randoms = measured[len(attributions) :]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1].score, i))
    return AttributionComparison(
        model=model.name,
        prompt=prompt,
        tokens=prep.tokens,
        positions=prep.positions,
        target=prep.target.to_dict(model),
        full_value=prep.full_value,
        baseline_value=prep.reference_value,
        baseline=baseline,
        methods=[RankedMethod(rank + 1, *scored[i]) for rank, i in enumerate(order)],
        random=mean_of(randoms),
        random_orders=random_orders,
        forward_rows=prep.forward_rows,
        seconds=time.perf_counter() - start,
    )
