"""Two models whose tokenizers differ: their tokens cannot be paired, so only their text is compared.

``compare_generations`` puts the greedy continuations of the same prompts side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result


@dataclass(frozen=True)
class GenerationComparison(Result):
    kind = "compare_generations"
    json_keys = ("model", "model_a", "model_b", "max_new_tokens", "rows")

    model_a: str
    model_b: str
    max_new_tokens: int
    prompts: list[str]
    texts_a: list[str]
    texts_b: list[str]

    @property
    def common_prefix(self) -> list[int]:
        """Per prompt, how many characters the two continuations share from their start."""
        out = []
        for a, b in zip(self.texts_a, self.texts_b, strict=True):
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            out.append(n)
        return out

    def _json_model(self) -> str:
        return self.model_a  # readers that show one model name show A's

    def _json_rows(self) -> list[dict]:
        return [
            {"prompt": p, "a": a, "b": b, "identical": a == b, "common_prefix_chars": n}
            for p, a, b, n in zip(self.prompts, self.texts_a, self.texts_b, self.common_prefix, strict=True)
        ]

    def figure(self) -> Figure:
        extra = {}
        for i, (p, a, b) in enumerate(zip(self.prompts, self.texts_a, self.texts_b, strict=True)):
            extra[f"{i + 1}. {p!r}"] = f"A: {a!r} | B: {b!r}"
        return Figure(
            f"{self.model_a} vs {self.model_b}: continuations side by side",
            [
                Bars(
                    "characters the continuations share from their start",
                    [p[:40] for p in self.prompts],
                    [float(n) for n in self.common_prefix],
                    "characters",
                )
            ],
            **explanation("compare_generations"),
            extra=extra,
        )


def compare_generations(
    model_a: Model, model_b: Model, prompts: Sequence[str], *, max_new_tokens: int = 20
) -> GenerationComparison:
    """Greedy continuations of ``prompts`` by both models, side by side (any two models, any tokenizers)."""
    if not prompts:
        raise InputError("no prompts given; pass at least one prompt")
    if not 1 <= max_new_tokens <= 512:
        raise InputError(f"max_new_tokens must be in 1..512, got {max_new_tokens}")
    texts_a = [model_a.generate(p, max_new_tokens=max_new_tokens).completion for p in prompts]
    texts_b = [model_b.generate(p, max_new_tokens=max_new_tokens).completion for p in prompts]
    return GenerationComparison(model_a.name, model_b.name, max_new_tokens, list(prompts), texts_a, texts_b)
