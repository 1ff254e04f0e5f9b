"""One prompt made ready for input attribution: embeddings, baseline, target and batched evaluation.

The input space is the output of the ``embed`` hook. A method evaluates ``f`` on edited embeddings by
running the prompt's token ids with a ``Replace`` on ``embed`` that substitutes a whole batch of
embedding tensors, so every family runs through its own Hugging Face forward (the model is never
reimplemented) and gradients flow to the substituted tensor.

BOS: when the model put a BOS token at position 0, it is held at its real embedding in every input
and baseline and receives no attribution. Gemma and Llama-like models use BOS as an attention sink;
replacing it moves the output far more than any content token does, which would swamp every method
with an artefact of the sink rather than say anything about the text. So "f(baseline)" means all
prompt tokens after BOS replaced, and completeness / efficiency are checked over those tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...errors import InputError
from ...interventions.values import Replace
from ...model.model import Model
from .baselines import baseline_vector
from .target import Target, make_target

MAX_TOKENS = 512  # occlusion, SHAP and the faithfulness curves cost passes per token
_TOKEN_ROWS = 4096  # tokens per batched forward (rows = this // prompt length, at most 64)


@dataclass(eq=False)
class Prepared:
    model: Model
    prompt: str
    ids: torch.Tensor  # [1, n]
    tokens: list[str]  # every position, BOS included
    positions: list[int]  # positions that receive attribution (all but a leading BOS)
    inputs: torch.Tensor  # [1, n, d] the prompt's embeddings
    reference: torch.Tensor  # [1, n, d] inputs with every attributed position at the baseline
    baseline: str
    target: Target
    full_value: float  # f(inputs)
    reference_value: float  # f(reference)
    batch_size: int
    forward_rows: int = 1  # batch rows run so far for this prompt (forward+backward counts as one)
    _coalitions: dict[bytes, float] = field(default_factory=dict, repr=False)
    _input_gradient: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_players(self) -> int:
        return len(self.positions)

    def embeds(self, keep: torch.Tensor) -> torch.Tensor:
        """[B, n, d] inputs where ``keep`` ([B, players] bool) is True, the baseline elsewhere."""
        select = torch.ones(keep.shape[0], self.ids.shape[1], dtype=torch.bool)
        select[:, self.positions] = keep.bool().cpu()
        return torch.where(select[..., None].to(self.inputs.device), self.inputs, self.reference)

    def evaluate(self, embeds: torch.Tensor) -> torch.Tensor:
        """[B] float64 values of f on a batch of embedding tensors (no gradient), in batched passes."""
        values = [self.forward(chunk, grad=False) for chunk in embeds.split(self.batch_size)]
        return torch.cat(values).double()

    def gradients(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] values, [B, n, d] gradients of f w.r.t. each embedding tensor), in batched passes."""
        values, grads = [], []
        for chunk in embeds.split(self.batch_size):
            leaf = chunk.detach().requires_grad_(True)
            with torch.enable_grad():
                value = self.forward(leaf, grad=True)
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            values.append(value.detach())
            grads.append(grad)
        return torch.cat(values).double(), torch.cat(grads)

    def input_gradient(self) -> torch.Tensor:
        """[n, d] gradient of f at the prompt itself (computed once, shared by saliency and gradient x input)."""
        if self._input_gradient is None:
            self._input_gradient = self.gradients(self.inputs)[1][0]
        return self._input_gradient

    def coalition_values(self, keep: torch.Tensor) -> torch.Tensor:
        """[B] f with only the ``keep`` tokens present; each distinct set is evaluated once per prompt."""
        keep = keep.bool().cpu()
        keys = [bytes(row.numpy()) for row in keep.to(torch.uint8)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._coalitions))
        if missing:
            index = {k: i for i, k in enumerate(keys)}
            rows = keep[[index[k] for k in missing]]
            for key, value in zip(missing, self.evaluate(self.embeds(rows)).tolist(), strict=True):
                self._coalitions[key] = value
        return torch.tensor([self._coalitions[k] for k in keys], dtype=torch.float64)

    def forward(self, embeds: torch.Tensor, *, grad: bool = True) -> torch.Tensor:
        """[B] f on a batch of embedding tensors in one pass (kept differentiable when ``grad``)."""
        batch = embeds.shape[0]
        self.forward_rows += batch
        run = self.model.run(
            self.ids.expand(batch, -1),
            cache=["ln_final"],
            logits=False,
            grad=grad,
            interventions=[Replace("embed", fn=lambda _act: embeds)],
        )
        value = self.target(self.model, run)
        if not torch.isfinite(value).all():
            raise InputError(
                f"the target came out NaN or infinite on edited embeddings (baseline '{self.baseline}'); "
                "try another baseline, or load the model in float32"
            )
        return value


def prepare(
    model: Model,
    prompt: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    kind: str | None = None,
    baseline: str = "pad",
    batch_size: int | None = None,
) -> Prepared:
    """Tokenize, embed, resolve the target (default: the top prediction) and the baseline input."""
    if not isinstance(prompt, str):
        raise InputError("input attribution takes one prompt as text")
    run = model.run(prompt, cache=["embed", "ln_final"], logits=False)
    ids = run.tokens
    n = ids.shape[1]
    bos = model.tokenizer.bos_token_id
    positions = list(range(1 if bos is not None and int(ids[0, 0]) == bos else 0, n))
    if not positions:
        raise InputError("the prompt has no token to attribute besides BOS; give some text")
    if len(positions) > MAX_TOKENS:
        raise InputError(f"input attribution reads at most {MAX_TOKENS} tokens, got {len(positions)}; shorten it")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    resolved = make_target(model, run, target=target, versus=versus, kind=kind)
    inputs = run.cache["embed"].clone()
    reference = inputs.clone()
    reference[0, positions] = baseline_vector(model, baseline).to(inputs.dtype)
    prepared = Prepared(
        model=model,
        prompt=prompt,
        ids=ids,
        tokens=model.to_str_tokens(ids[0]),
        positions=positions,
        inputs=inputs,
        reference=reference,
        baseline=baseline,
        target=resolved,
        full_value=float(resolved(model, run)[0]),
        reference_value=0.0,
        batch_size=batch_size or max(1, min(64, _TOKEN_ROWS // n)),
    )
    prepared.reference_value = float(prepared.evaluate(reference)[0])
    everything = torch.ones(1, len(positions), dtype=torch.bool)
    prepared._coalitions[bytes(everything[0].to(torch.uint8).numpy())] = prepared.full_value
    prepared._coalitions[bytes((~everything[0]).to(torch.uint8).numpy())] = prepared.reference_value
    return prepared
