"""Causal tracing (Meng et al. 2022, arXiv:2202.05262): where in the network a fact is recalled.

Three kinds of run of one prompt ("The Eiffel Tower is located in the city of"):

- clean: the prompt as is; the model gives the answer (" Paris") probability ``p_clean``;
- corrupted: Gaussian noise is added to the subject's token embeddings (the ``embed`` hook), std
  ``noise`` (default 3x the standard deviation of subject-token embeddings, as in the paper), so the
  model no longer knows which subject it reads; the answer's probability drops to ``p_corrupted``;
- restored: a corrupted run in which one hidden state is put back to its clean value, at one layer and
  one token position. Where restoring brings the answer back, that state carries the fact.

States restored: ``resid`` (the residual stream entering block L, ``blocks.L.resid_pre``: row 0 restores
the embedding itself), ``mlp`` and ``attn`` (what the MLP or attention adds to the stream, after any
post-norm). As in the paper, ``mlp`` and ``attn`` restore a *window* of layers around L at once
(``range(L - w//2, L + ceil(w/2))``, clipped), because one sublayer alone moves the answer little; the
default window is the paper's 10 of GPT-2 XL's 48 layers, scaled to the model's depth.

The noise is drawn once per ``samples`` row from a seeded generator, so a trace is repeatable; every
cell is averaged over the same noise draws. Runs are batched: each forward pass carries many restored
copies of the prompt (row = cell x noise sample), each with its own restore mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...interventions.values import Replace
from ...model.model import Model
from ...model.run import Run
from ...progress import progress
from ...views.explanations import explanation
from ...views.figures import Figure, Heatmap
from ...views.result import Result
from ..metrics import Metric, make_metric
from .facts import BUILTIN_FACTS
from .prompts import subject_span

KINDS: tuple[str, ...] = ("resid", "mlp", "attn")
_SITE = {"resid": "resid_pre", "mlp": "mlp_out", "attn": "attn_out"}
_TOKENS_PER_PASS = 8192
_NAMES = {"resid": "residual stream (entering the layer)", "mlp": "MLP output", "attn": "attention output"}


@dataclass(frozen=True)
class CausalTrace(Result):
    """The answer's probability after restoring each (kind, layer, position) of a corrupted run."""

    kind = "causal_trace"
    json_keys = (
        "model", "prompt", "subject", "tokens", "subject_positions", "target", "target_id", "clean_prob",
        "corrupted_prob", "noise_std", "samples", "seed", "window", "layers", "scores", "peaks", "forward_passes",
    )  # fmt: skip

    model: str
    prompt: str
    subject: str
    tokens: list[str]
    subject_start: int  # first subject token position
    subject_end: int  # one past the last
    target: str
    target_id: int
    clean_prob: float
    corrupted_prob: float
    noise_std: float
    samples: int
    seed: int
    window: int
    layers: list[int]
    scores: dict[str, list[list[float]]]  # kind -> [layer][position], mean probability over noise samples
    forward_passes: int

    @property
    def kinds(self) -> list[str]:
        return list(self.scores)

    def peak(self, kind: str) -> tuple[int, int, float]:
        """(layer, position, probability) of the cell that restores the answer most."""
        grid = torch.tensor(self._grid(kind))
        flat = int(grid.argmax())
        row, position = divmod(flat, grid.shape[1])
        return self.layers[row], position, float(grid.view(-1)[flat])

    def _grid(self, kind: str) -> list[list[float]]:
        if kind not in self.scores:
            raise InputError(f"this trace has no '{kind}' states; it traced {', '.join(self.scores)}")
        return self.scores[kind]

    def _json_subject_positions(self) -> list[int]:
        return [self.subject_start, self.subject_end]

    def _json_peaks(self) -> dict[str, dict[str, float]]:
        return {kind: dict(zip(("layer", "position", "prob"), self.peak(kind), strict=True)) for kind in self.scores}

    def column_labels(self) -> list[str]:
        return [
            f"{p} {t!r}" + ("*" if self.subject_start <= p < self.subject_end else "")
            for p, t in enumerate(self.tokens)
        ]

    def heatmap(self, kind: str) -> Heatmap:
        grid = self._grid(kind)
        span = f" (window of {self.window} layers)" if kind != "resid" and self.window > 1 else ""
        return Heatmap(
            f"restoring the {_NAMES[kind]}{span}",
            grid,
            [f"L{layer}" for layer in self.layers],
            self.column_labels(),
            row_title="layer",
            col_title="position (* = subject)",
            value_label=f"p({self.target!r})",
            cell_text=[[f"{v:.2f}" for v in row] for row in grid],
            hover=[
                [
                    f"{kind} at L{layer}, position {p} {self.tokens[p]!r}: p = {v:.4f} "
                    f"(clean {self.clean_prob:.4f}, corrupted {self.corrupted_prob:.4f})"
                    for p, v in enumerate(row)
                ]
                for layer, row in zip(self.layers, grid, strict=True)
            ],
        )

    def figure(self) -> Figure:
        return Figure(
            f"{self.model}: causal trace of {self.prompt!r} -> {self.target!r}",
            [self.heatmap(kind) for kind in self.scores],
            **explanation(
                self.kind,
                subject=self.subject,
                target=self.target,
                samples=self.samples,
                corrupted_prob=self.corrupted_prob,
                clean_prob=self.clean_prob,
            ),
            extra={
                "clean p": f"{self.clean_prob:.4f}",
                "corrupted p": f"{self.corrupted_prob:.4f}",
                "noise std": f"{self.noise_std:.4g}",
                "samples": str(self.samples),
                "forward passes": str(self.forward_passes),
            }
            | {f"{kind} peak": f"L{self.peak(kind)[0]} pos {self.peak(kind)[1]}" for kind in self.scores},
        )


def default_window(n_layers: int) -> int:
    """The paper's window (10 layers of GPT-2 XL's 48) scaled to this depth, at least 1."""
    return max(1, round(10 * n_layers / 48))


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """Layers restored together for a cell at ``layer`` (the paper's centring, clipped to the model)."""
    return list(range(max(0, layer - window // 2), min(n_layers, layer + math.ceil(window / 2))))


def subject_embedding_std(model: Model, subjects: Sequence[str]) -> float:
    """Standard deviation of the ``embed`` activations of the subjects' tokens (the paper's noise unit)."""
    texts = [s for s in subjects if s and s.strip()]
    if not texts:
        raise InputError("give at least one subject to measure the embedding spread on")
    run = model.run(texts, cache=["embed"], stop_at_layer=0, prepend_bos=False)
    mask = run.attention_mask.bool().to(run.cache["embed"].device)
    values = run.cache["embed"][mask].double()
    return float(values.std())


@dataclass(frozen=True)
class TraceSetup:
    """One prompt prepared for tracing: tokens, subject span, metric, clean states and the noise draws."""

    model: Model
    tokens: torch.Tensor  # [1, n]
    start: int
    end: int
    metric: Metric
    clean: Run  # with every state a restore may need cached
    clean_prob: float
    noise_std: float
    draws: torch.Tensor  # [samples, end - start, d_model] float64
    seed: int

    @property
    def samples(self) -> int:
        return int(self.draws.shape[0])


def prepare_trace(
    model: Model,
    prompt: str,
    subject: str,
    hooks: Sequence[str],
    *,
    target: str | int | None = None,
    noise: float = 3.0,
    noise_std: float | None = None,
    samples: int = 10,
    seed: int = 0,
) -> TraceSetup:
    """Run the clean prompt once (caching ``hooks``) and draw the seeded noise."""
    if not 1 <= samples <= 1000:
        raise InputError(f"samples must be in 1..1000, got {samples}")
    start, end = subject_span(model, prompt, subject)
    tokens = model.to_tokens(prompt)
    clean = model.run(tokens, cache=[*hooks, "ln_final"], logits=False)
    if target is None:
        target = int(model.logits_at(clean, [tokens.shape[1] - 1])[0].argmax())
    metric = make_metric(model, "prob", target=target)
    if noise_std is None:
        if not math.isfinite(noise) or noise <= 0:
            raise InputError(f"noise must be a positive multiple of the embedding std, got {noise}")
        noise_std = noise * subject_embedding_std(model, [subject, *(f.subject for f in BUILTIN_FACTS)])
    elif not math.isfinite(noise_std) or noise_std <= 0:
        raise InputError(f"noise_std must be a positive number, got {noise_std}")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(samples, end - start, model.d_model, generator=generator, dtype=torch.float64) * noise_std
    return TraceSetup(model, tokens, start, end, metric, clean, float(metric(model, clean)[0]), noise_std, draws, seed)


def restored_probabilities(
    setup: TraceSetup, restores: Sequence[Mapping[str, Sequence[int]] | None], batch_size: int | None = None
) -> tuple[torch.Tensor, int]:
    """[len(restores)] answer probability, averaged over the noise draws, of corrupted runs in which each
    restore's hooks take their clean values at its positions (``None`` or ``{}``: corrupted only); and the
    number of forward passes. Every restore x draw is one row of a batched pass."""
    model, n = setup.model, setup.tokens.shape[1]
    rows = [(restore or {}, sample) for restore in restores for sample in range(setup.samples)]
    limit = batch_size or max(1, min(256, _TOKENS_PER_PASS // n))
    passes = max(1, -(-len(rows) // limit))
    per_pass = -(-len(rows) // passes)
    values = []
    chunks = range(0, len(rows), per_pass)
    for first in progress(chunks, total=len(chunks), description="causal tracing", unit="batch"):
        chunk = rows[first : first + per_pass]
        interventions = [_noise(setup.draws[[sample for _, sample in chunk]], setup.start, setup.end)]
        masks: dict[str, torch.Tensor] = {}
        for i, (restore, _) in enumerate(chunk):
            for hook, positions in restore.items():
                masks.setdefault(hook, torch.zeros(len(chunk), n, dtype=torch.bool))[i, list(positions)] = True
        interventions += [Replace(hook, fn=_restorer(mask, setup.clean.cache[hook])) for hook, mask in masks.items()]
        run = model.run(
            setup.tokens.expand(len(chunk), -1), cache=["ln_final"], logits=False, interventions=interventions
        )
        values.append(setup.metric(model, run))
    return torch.cat(values).double().reshape(len(restores), setup.samples).mean(1), len(chunks)


def causal_trace(
    model: Model,
    prompt: str,
    subject: str,
    *,
    target: str | int | None = None,
    kinds: Sequence[str] = KINDS,
    noise: float = 3.0,
    noise_std: float | None = None,
    samples: int = 10,
    window: int | None = None,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> CausalTrace:
    """Corrupt ``subject`` in ``prompt`` with noise and restore each state, layer by position.

    ``target``: the answer token (default: the clean run's top prediction). ``noise``: the noise std in
    units of the subject-embedding std (3, as in the paper), or ``noise_std`` as an absolute value.
    ``samples`` noise draws per cell (seeded by ``seed``); ``window`` layers restored together for
    ``mlp``/``attn``; ``batch_size`` restored runs per forward pass (default: about 8192 tokens a pass).
    """
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown trace kind {unknown[0] if unknown else 'none'!r}; choose from {', '.join(KINDS)}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    window = default_window(model.n_layers) if window is None else int(window)
    if window < 1:
        raise InputError(f"window must be at least 1 layer, got {window}")
    layers = list(range(model.n_layers)) if layers is None else [int(layer) for layer in layers]
    if not layers or any(not 0 <= layer < model.n_layers for layer in layers):
        raise InputError(f"layers must be in 0..{model.n_layers - 1}, got {layers}")
    hooks = sorted({_hook(k, w) for k in kinds for layer in layers for w in _restored(k, layer, window, model)})
    setup = prepare_trace(
        model, prompt, subject, hooks, target=target, noise=noise, noise_std=noise_std, samples=samples, seed=seed
    )
    n = setup.tokens.shape[1]
    cells = [(kind, layer, position) for kind in kinds for layer in layers for position in range(n)]
    restores = [None] + [
        {_hook(kind, w): [position] for w in _restored(kind, layer, window, model)} for kind, layer, position in cells
    ]
    probs, passes = restored_probabilities(setup, restores, batch_size)
    grid = probs[1:].reshape(len(kinds), len(layers), n)
    return CausalTrace(
        model=model.name,
        prompt=prompt,
        subject=subject,
        tokens=model.to_str_tokens(setup.tokens[0]),
        subject_start=setup.start,
        subject_end=setup.end,
        target=model.tokenizer.decode([setup.metric.target_id]),
        target_id=int(setup.metric.target_id),
        clean_prob=setup.clean_prob,
        corrupted_prob=float(probs[0]),
        noise_std=setup.noise_std,
        samples=samples,
        seed=seed,
        window=window,
        layers=layers,
        scores={kind: grid[k].tolist() for k, kind in enumerate(kinds)},
        forward_passes=passes,
    )


def _hook(kind: str, layer: int) -> str:
    return f"blocks.{layer}.{_SITE[kind]}"


def _restored(kind: str, layer: int, window: int, model: Model) -> list[int]:
    return [layer] if kind == "resid" else window_layers(layer, window, model.n_layers)


def _noise(draws: torch.Tensor, start: int, end: int) -> Replace:
    """Add row ``i``'s noise draw to the subject's embeddings of row ``i``."""

    def fn(act: torch.Tensor) -> torch.Tensor:
        out = act.clone()
        out[:, start:end] = (act[:, start:end].double() + draws.to(act.device)).to(act.dtype)
        return out

    return Replace("embed", fn=fn)


def _restorer(mask: torch.Tensor, clean: torch.Tensor):
    """Replace's function: row i takes the clean values at its masked positions."""

    def fn(act: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(act.device)[:, :, None], clean.to(device=act.device, dtype=act.dtype), act)

    return fn


def traced_layer(model: Model, fact, *, samples: int = 3, seed: int = 0) -> int:
    """The layer whose MLP output (restored at any subject token) best brings ``fact``'s true answer back."""
    trace = causal_trace(
        model, fact.text, fact.subject, target=fact.target_true, kinds=["mlp"], samples=samples, seed=seed
    )
    grid = torch.tensor(trace.scores["mlp"])[:, trace.subject_start : trace.subject_end]
    return trace.layers[int(grid.max(dim=1).values.argmax())]
