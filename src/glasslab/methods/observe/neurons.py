"""MLP neurons: the most active and most logit-relevant at a position, and one neuron's profile.

A neuron is one coordinate of ``blocks.{L}.mlp.post`` (the input of the MLP's output projection);
it writes ``activation * W_out[n]`` into the residual stream. Its direct effect on a logit is that
write through the final norm with its scale frozen (see ``methods.attribute.dla``); in post-norm families (Gemma
2/3) the MLP's post-norm is linearised the same way.

``neuron_profile`` is the feature view of the identity basis (``features.basis.NeuronBasis``): the same
streamed scan as an SAE feature's dashboard (blocks ``0..L`` only, the best ``k`` contexts kept, so
memory does not grow with the corpus) and the same promoted/suppressed tokens; with ``cluster`` that scan
runs on Ray workers, its partial results merged into exactly the local result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...cluster import ClusterSpec
from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation, note
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Record, Result
from ..attribute.dla import (
    check_position,
    effective_direction,
    neuron_effects,
    unembed_direction,
)
from ..features.basis import Context, NeuronBasis, TokenEffect, token_effects
from ..features.basis import direct_token_effects as direct_token_effects  # its home before the basis
from ..features.scan import contexts_of, scan_features

# ---------------------------------------------------------------------------------------------------
# Neurons at one position


@dataclass(frozen=True)
class NeuronScore(Record):
    layer: int
    neuron: int
    activation: float
    contribution: float | None  # direct share of the target logit (difference); None without a target


@dataclass(frozen=True)
class NeuronsAtPosition(Result):
    kind = "neurons"

    model: str
    prompt: str
    position: int
    context_token: str
    layer: int | None  # None: ranked over every layer
    metric: str | None  # e.g. "logit(' Paris') - logit(' London')"
    most_active: list[NeuronScore]  # by |activation|
    most_relevant: list[NeuronScore]  # by |contribution|; empty without a target

    def figure(self) -> Figure:
        panels = [
            Bars(
                "most active neurons (largest |activation|)",
                [f"L{s.layer} N{s.neuron}" for s in self.most_active],
                [s.activation for s in self.most_active],
                "activation",
            )
        ]
        if self.most_relevant:
            panels.append(
                Bars(
                    f"largest direct shares of {self.metric}",
                    [f"L{s.layer} N{s.neuron}" for s in self.most_relevant],
                    [s.contribution or 0.0 for s in self.most_relevant],
                    "logit units",
                    hover=[
                        f"L{s.layer} N{s.neuron}: activation {s.activation:.4f}, share {s.contribution:.4f}"
                        for s in self.most_relevant
                    ],
                )
            )
        where = f"layer {self.layer}" if self.layer is not None else "all layers"
        return Figure(
            f"{self.model}: MLP neurons after {self.context_token!r} (position {self.position}, {where})",
            panels,
            **explanation("neurons", relevant=note("neurons", "relevant" if self.most_relevant else "active_only")),
        )


def top_neurons(
    model: Model,
    prompt: str,
    *,
    position: int = -1,
    layer: int | None = None,
    top: int = 10,
    target: str | None = None,
    versus: str | None = None,
) -> NeuronsAtPosition:
    """The ``top`` most active neurons at ``position`` (in ``layer``, or over all layers), and, given a
    ``target`` token (optionally ``versus`` another), those with the largest direct share of its logit."""
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in 1..1000, got {top}")
    if layer is not None and not 0 <= layer < model.n_layers:
        raise InputError(f"layer {layer} is out of range (valid: 0..{model.n_layers - 1})")
    if versus is not None and target is None:
        raise InputError("--versus needs --target: the share is of logit(target) - logit(versus)")
    tokens = model.to_tokens(prompt)
    p = check_position(position, tokens.shape[1])
    layers = [layer] if layer is not None else list(range(model.n_layers))
    sites = [f"blocks.{layer_}.mlp.post" for layer_ in layers]
    last = model.n_layers - 1
    if target is None:
        run = model.run(tokens, cache=sites, stop_at_layer=max(layers) + 1)
    else:
        run = model.run(tokens, cache=[*sites, f"blocks.{last}.resid_post"], logits=False)
    activations = torch.stack([run.cache[name][0, p].float() for name in sites])  # [layers, d_mlp]

    contributions = None
    metric = None
    if target is not None:
        target_id = model.token_id(target, "target")
        versus_id = None if versus is None else model.token_id(versus, "versus token")
        metric = f"logit({model.tokenizer.decode([target_id])!r})"
        if versus_id is not None:
            metric += f" - logit({model.tokenizer.decode([versus_id])!r})"
        params = model.weights.final_norm()
        x = run.cache[f"blocks.{last}.resid_post"][0, p].float()
        direction, _ = unembed_direction(model, target_id, versus_id)
        u = effective_direction(params, params.scale(x), direction)
        contributions = torch.stack(
            [neuron_effects(model, layer_, run.cache[f"blocks.{layer_}.mlp.post"][0, p], u)[1] for layer_ in layers]
        )

    def scores(order: torch.Tensor) -> list[NeuronScore]:
        k = min(top, order.numel())
        out = []
        for i in torch.topk(order.flatten(), k).indices.tolist():
            row, n = divmod(i, model.d_mlp)
            share = None if contributions is None else float(contributions[row, n])
            out.append(NeuronScore(layers[row], n, float(activations[row, n]), share))
        return out

    return NeuronsAtPosition(
        model=model.name,
        prompt=prompt,
        position=p,
        context_token=model.tokenizer.decode([int(tokens[0, p])]),
        layer=layer,
        metric=metric,
        most_active=scores(activations.abs()),
        most_relevant=[] if contributions is None else scores(contributions.abs()),
    )


# ---------------------------------------------------------------------------------------------------
# One neuron over a corpus


@dataclass(frozen=True)
class NeuronProfile(Result):
    kind = "neuron_profile"

    model: str
    layer: int
    neuron: int
    corpus: str
    sequences: int  # scanned
    positions: int  # activations scanned
    mean_activation: float
    max_activation: float
    contexts: list[Context]  # best first
    promotes: list[TokenEffect]  # largest direct logit effect per unit of activation
    suppresses: list[TokenEffect]  # most negative
    post_norm: bool  # the MLP output passes a post-norm: promotes/suppresses are a direction only

    def figure(self) -> Figure:
        # Align every window on its max token; cells outside a sequence take the lowest value, no text.
        before = max((c.centre for c in self.contexts), default=0)
        after = max((len(c.tokens) - c.centre for c in self.contexts), default=0)
        floor = min((min(c.activations) for c in self.contexts), default=0.0)
        values, text, hover = [], [], []
        for c in self.contexts:
            left, right = before - c.centre, after - (len(c.tokens) - c.centre)
            values.append([floor] * left + c.activations + [floor] * right)
            text.append([""] * left + [repr(t)[1:-1] for t in c.tokens] + [""] * right)
            tips = [f"{t!r}: {a:.4f}" for t, a in zip(c.tokens, c.activations, strict=True)]
            hover.append([""] * left + tips + [""] * right)
        panels: list[Bars | Heatmap] = []
        if self.contexts:
            panels.append(
                Heatmap(
                    "top-activating contexts (the max token is in the middle)",
                    values,
                    [f"{c.activation:.3f}" for c in self.contexts],
                    [str(i - before) for i in range(before + after)],
                    row_title="max activation",
                    col_title="offset from the max token",
                    value_label="activation",
                    cell_text=text,
                    hover=hover,
                )
            )
        panels += [
            Bars(
                "tokens its output promotes", [repr(t.token) for t in self.promotes], [t.value for t in self.promotes]
            ),
            Bars(
                "tokens its output suppresses",
                [repr(t.token) for t in self.suppresses],
                [t.value for t in self.suppresses],
            ),
        ]
        return Figure(
            f"{self.model}: neuron L{self.layer} N{self.neuron}",
            panels,
            **explanation("neuron_profile", post_norm=note("neuron_profile", "post_norm") if self.post_norm else ""),
            extra={
                "corpus": self.corpus,
                "sequences": str(self.sequences),
                "mean activation": f"{self.mean_activation:.4f}",
                "max": f"{self.max_activation:.4f}",
            },
        )


def neuron_profile(
    model: Model,
    layer: int,
    neuron: int,
    *,
    corpus: str = "builtin",
    sequences: int = 64,
    seq_len: int = 64,
    batch_size: int = 16,
    k: int = 10,
    window: int = 8,
    top_tokens: int = 10,
    include_bos: bool = False,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> NeuronProfile:
    """Where neuron ``neuron`` of ``layer`` fires most in ``corpus``, and the tokens it promotes/suppresses.

    Scans ``sequences`` packed sequences of ``seq_len`` tokens; each sequence contributes its
    maximum, and the ``k`` largest are kept with a window of ``window`` tokens either side (the earlier
    sequence wins a tie). The BOS position is skipped unless ``include_bos`` (many neurons take extreme
    values there). ``cluster`` (``local``, ``auto`` or an address) scans on Ray ``workers`` with
    ``worker_gpus`` GPUs each (``scan_features``); the result is the local one.
    """
    if not 0 <= layer < model.n_layers:
        raise InputError(f"layer {layer} is out of range (valid: 0..{model.n_layers - 1})")
    if not 0 <= neuron < model.d_mlp:
        raise InputError(f"neuron {neuron} is out of range (valid: 0..{model.d_mlp - 1})")
    for name, value, low in (
        ("sequences", sequences, 1),
        ("k", k, 1),
        ("window", window, 0),
        ("top_tokens", top_tokens, 1),
    ):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    scan = scan_features(
        model,
        NeuronBasis(model, layer),
        [neuron],
        corpus=corpus,
        sequences=sequences,
        seq_len=seq_len,
        batch_size=batch_size,
        k=k,
        window=window,
        bins=2,
        include_bos=include_bos,
        description=f"L{layer} N{neuron}",
        cluster=cluster,
        workers=workers,
        worker_gpus=worker_gpus,
    )
    contexts = contexts_of(scan, 0, model.tokenizer.decode)
    promotes, suppresses, post_norm = _output_tokens(model, layer, neuron, top_tokens)
    return NeuronProfile(
        model=model.name,
        layer=layer,
        neuron=neuron,
        corpus=scan.corpus,
        sequences=scan.sequences,
        positions=scan.tokens,
        mean_activation=float(scan.total[0]) / max(scan.tokens, 1),
        max_activation=float(scan.maximum[0]),
        contexts=contexts,
        promotes=promotes,
        suppresses=suppresses,
        post_norm=post_norm,
    )


def _output_tokens(model: Model, layer: int, neuron: int, k: int) -> tuple[list[TokenEffect], list[TokenEffect], bool]:
    """Tokens whose logits one unit of the neuron raises / lowers most along its direct path.

    The write ``W_out[n]`` goes through the post-MLP norm's weight (post-norm families), then the final
    norm's weight (centred for LayerNorm), then the unembedding. Both norms' scales are positive factors
    set by the whole residual stream, left out: the ranking does not depend on them.
    """
    promotes, suppresses, _ = token_effects(model, NeuronBasis(model, layer), [neuron], k)
    return promotes[0], suppresses[0], model.arch.post_mlp_norm is not None
