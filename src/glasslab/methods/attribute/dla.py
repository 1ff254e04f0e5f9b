"""Direct logit attribution (Elhage et al. 2021): how much each component writes toward a token's logit.

The final residual stream at a position is a sum of writes: the embedding (``blocks.0.resid_pre``,
token plus position embeddings), each layer's ``attn_out`` (the heads' ``head_out`` plus any output
bias) and each ``mlp_out`` (each neuron's ``mlp.post[n] * W_out[n]`` plus any bias). The logit is
``final_norm(x) @ W_U[:, t]``. The final norm is not linear, but it is once its scale is frozen at
the value it takes on the full final residual ``x``:

- RMSNorm: ``s = rsqrt(mean(x²) + eps)``, ``norm(x) = x * s * w`` (Gemma's ``w`` is ``1 + weight``).
- LayerNorm: ``s = rsqrt(var(x) + eps)``, ``norm(x) = (x - mean(x)) * s * w + b``; centring is linear,
  so each component is centred too, and ``b @ W_U[:, t]`` is a constant term of its own.

So ``logit = sum_c c · u + constants`` with ``u = s * w * W_U[:, t]`` (centred for LayerNorm): each
component's share is one dot product and the shares add up to the logit exactly, up to float
rounding. The decomposed quantity (the "normalised logit") is the logit *before* any final
soft-capping (Gemma 2's ``final_logit_softcapping``; ``tanh`` is not linear), including any
unembedding bias as a constant term. With ``versus``, ``W_U[:, t] - W_U[:, v]`` replaces
``W_U[:, t]`` and the logit difference is decomposed.

Post-norm families (Gemma 2/3) normalise each sublayer's output before adding it; ``head_out`` is
already linearised with the post-attention norm's frozen scale (docs/hooks.md), and neurons are
linearised the same way with the post-MLP norm's scale computed on the whole MLP output.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.norms import NormParams, check_norm
from ...model.run import Run
from ...views.explanations import explanation
from ...views.figures import Bars, Figure, Heatmap
from ...views.result import Result
from .dla_directions import check_position, effective_direction, neuron_effects, unembed_direction

# ---------------------------------------------------------------------------------------------------
# Deprecated (the directions now live in methods.attribute.dla_directions, re-exported here)


def neuron_out_weights(model: Model, layer: int) -> torch.Tensor:
    """Deprecated: ``model.weights.W_out(layer)``, [d_mlp, d_model]."""
    warnings.warn(
        "glasslab.methods.attribute.dla.neuron_out_weights is deprecated; use model.weights.W_out(layer)",
        DeprecationWarning,
        stacklevel=2,
    )
    return model.weights.W_out(layer)


# ---------------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class NeuronContribution:
    layer: int
    neuron: int
    activation: float
    per_unit: float  # direct effect of one unit of activation
    contribution: float  # activation * per_unit


@dataclass(frozen=True)
class LogitAttribution(Result):
    kind = "logit_attribution"
    json_keys = (
        "model",
        "prompt",
        "position",
        "context_token",
        "target",
        "versus",
        "metric",
        "logit",
        "normalised_logit",
        "softcapped",
        "sum_of_contributions",
        "error",
        "final_norm_scale",
        "embed",
        "attn",
        "mlp",
        "heads",
        "attn_bias",
        "constants",
        "cumulative",
        "logit_lens",
        "top_neurons",
    )

    model: str
    prompt: str
    position: int
    context_token: str
    target: str
    target_id: int
    versus: str | None
    versus_id: int | None
    logit: float  # the model's output (logit or logit difference), after any final soft-cap
    normalised_logit: float  # the decomposed quantity: before soft-capping, unembedding bias included
    softcapped: bool
    final_scale: float
    embed: float
    attn: list[float]  # per layer (heads + output bias)
    mlp: list[float]  # per layer
    heads: list[list[float]]  # [layer][head]
    attn_bias: list[float] | None  # per layer, families whose attention output projection has a bias
    constants: dict[str, float]  # final-norm bias, unembedding bias (zero-free)
    cumulative: list[float]  # frozen-scale logit of resid_post after each layer (prefix sums)
    lens: list[float]  # the same residuals decoded with their own final-norm scale (logit lens), pre-cap
    top_neurons: list[NeuronContribution]

    @property
    def total(self) -> float:
        """Sum of every component's share: equals ``normalised_logit`` up to float rounding."""
        return self.embed + sum(self.attn) + sum(self.mlp) + sum(self.constants.values())

    @property
    def error(self) -> float:
        return self.total - self.normalised_logit

    @property
    def metric(self) -> str:
        return f"logit({self.target!r})" + (f" - logit({self.versus!r})" if self.versus is not None else "")

    def components(self) -> list[tuple[str, float]]:
        """(label, share) in forward order: embedding, then each layer's attention and MLP, then constants."""
        rows = [("embed", self.embed)]
        for layer, (a, m) in enumerate(zip(self.attn, self.mlp, strict=True)):
            rows += [(f"L{layer} attn", a), (f"L{layer} mlp", m)]
        return rows + list(self.constants.items())

    def figure(self) -> Figure:
        running, hover = 0.0, []
        rows = self.components()
        for label, value in rows:
            running += value
            hover.append(f"{label}: {value:+.4f} (running total {running:.4f})")
        n_heads = len(self.heads[0]) if self.heads else 0
        panels: list[Bars | Heatmap] = [
            Bars(
                f"direct share of {self.metric}, in forward order",
                [label for label, _ in rows],
                [value for _, value in rows],
                "logit units",
                hover=hover,
            ),
            Heatmap(
                "each head's direct share",
                self.heads,
                [f"L{layer}" for layer in range(len(self.heads))],
                [f"H{h}" for h in range(n_heads)],
                row_title="layer",
                col_title="head",
                value_label="logit units",
                cell_text=[[f"{v:.2f}" for v in row] for row in self.heads],
                diverging=True,
            ),
            Bars(
                "cumulative: the frozen-scale logit after each layer",
                [f"after L{layer}" for layer in range(len(self.cumulative))],
                self.cumulative,
                "logit units",
                hover=[
                    f"after L{layer}: frozen scale {c:.4f}, logit lens {lens:.4f}"
                    for layer, (c, lens) in enumerate(zip(self.cumulative, self.lens, strict=True))
                ],
            ),
        ]
        if self.top_neurons:
            panels.append(
                Bars(
                    "neurons with the largest direct shares",
                    [f"L{n.layer} N{n.neuron}" for n in self.top_neurons],
                    [n.contribution for n in self.top_neurons],
                    "logit units",
                    hover=[
                        f"L{n.layer} N{n.neuron}: activation {n.activation:.4f} x {n.per_unit:.4f} per unit"
                        for n in self.top_neurons
                    ],
                )
            )
        cap = " (before the final soft-cap)" if self.softcapped else ""
        return Figure(
            f"{self.model}: what writes {self.metric} after {self.context_token!r}",
            panels,
            **explanation("logit_attribution", cap=cap),
            extra={
                "model's value": f"{self.logit:.4f}",
                "decomposed" + cap: f"{self.normalised_logit:.4f}",
                "sum of shares": f"{self.total:.4f}",
                "final norm scale": f"{self.final_scale:.4g}",
            },
        )

    def _json_target(self) -> dict:
        return {"token": self.target, "token_id": self.target_id}

    def _json_versus(self) -> dict | None:
        return None if self.versus is None else {"token": self.versus, "token_id": self.versus_id}

    def _json_sum_of_contributions(self) -> float:
        return self.total

    def _json_final_norm_scale(self) -> float:
        return self.final_scale

    def _json_logit_lens(self) -> list[float]:
        return self.lens


# ---------------------------------------------------------------------------------------------------
# Method


def attribution_hooks(neurons: bool) -> list[str]:
    """The hooks ``logit_attribution`` reads (``mlp.post`` only for the top neurons)."""
    hooks = ["blocks.0.resid_pre", "blocks.*.attn_out", "blocks.*.mlp_out", "blocks.*.resid_post"]
    hooks += ["blocks.*.attn.head_out", "ln_final"]
    return [*hooks, "blocks.*.mlp.post"] if neurons else hooks


def _constant_shares(params: NormParams, direction: torch.Tensor, unembed_bias: float) -> dict[str, float]:
    """The shares no component writes: the final norm's bias and the unembedding's bias, where present."""
    constants: dict[str, float] = {}
    if params.bias is not None:
        constants["final norm bias"] = float(params.bias @ direction)
    if unembed_bias:
        constants["unembedding bias"] = unembed_bias
    return constants


def _lens_logits(
    model: Model,
    final_norm: torch.nn.Module,
    cache: Mapping[str, torch.Tensor],
    p: int,
    direction: torch.Tensor,
    unembed_bias: float,
) -> tuple[list[float], float]:
    """The logit lens after each layer (each residual through the real final norm) and the logit from the
    model's own normalised final residual, both along ``direction``."""
    resid = torch.stack([cache[f"blocks.{layer}.resid_post"][0, p] for layer in range(model.n_layers)])
    with torch.inference_mode():
        lens = (final_norm(resid).float() @ direction + unembed_bias).tolist()
        normalised = float(cache["ln_final"][0, p].float() @ direction) + unembed_bias
    return lens, normalised


def _cumulative(start: float, attn: list[float], mlp: list[float]) -> list[float]:
    """The running total of the direct shares after each layer (attention plus MLP), from ``start``."""
    cumulative = [start]
    for a, m in zip(attn, mlp, strict=True):
        cumulative.append(cumulative[-1] + a + m)
    return cumulative[1:]


def _top_neurons(
    model: Model, cache: Mapping[str, torch.Tensor], p: int, u: torch.Tensor, top_neurons: int
) -> list[NeuronContribution]:
    """The ``top_neurons`` MLP neurons, over all layers, with the largest direct share (in absolute value)."""
    per_unit, contribution, activation = [], [], []
    for layer in range(model.n_layers):
        post = cache[f"blocks.{layer}.mlp.post"][0, p]
        unit, contrib = neuron_effects(model, layer, post, u)
        per_unit.append(unit)
        contribution.append(contrib)
        activation.append(post.float().to(u.device))
    flat = torch.stack(contribution).flatten()
    best = torch.topk(flat.abs(), min(top_neurons, flat.numel())).indices.tolist()
    d_mlp = model.d_mlp
    return [
        NeuronContribution(
            i // d_mlp,
            i % d_mlp,
            float(activation[i // d_mlp][i % d_mlp]),
            float(per_unit[i // d_mlp][i % d_mlp]),
            float(flat[i]),
        )
        for i in best
    ]


def logit_attribution(
    model: Model,
    prompt: str,
    *,
    target: str | int,
    versus: str | int | None = None,
    position: int = -1,
    top_neurons: int = 10,
    run: Run | None = None,
) -> LogitAttribution:
    """Decompose the logit of ``target`` (minus ``versus``'s) at ``position`` into direct shares.

    ``target``/``versus`` are text (their first token is used; include the leading space) or token ids. The shares
    (embedding, each layer's attention and MLP, each head, top neurons) add up to the logit before any
    final soft-cap; see the module docstring for the frozen-scale linearisation of the final norm.
    ``run``: a run of ``prompt`` that cached the hooks listed in ``attribution_hooks``, to reuse.
    """
    if not 0 <= top_neurons <= 1000:
        raise InputError(f"top_neurons must be in 0..1000, got {top_neurons}")
    target_id = model.token_id(target, "target")
    versus_id = None if versus is None else model.token_id(versus, "versus token")
    if run is None:
        run = model.run(prompt, cache=attribution_hooks(bool(top_neurons)))
    tokens = run.tokens
    p = check_position(position, tokens.shape[1])
    last = model.n_layers - 1
    cache = run.cache

    final_norm = model.module(model.arch.final_norm)
    params = model.weights.final_norm()
    x = cache[f"blocks.{last}.resid_post"][0, p].float()
    check_norm(params, final_norm, cache[f"blocks.{last}.resid_post"][0, p : p + 1], "final norm")
    scale = params.scale(x)
    direction, unembed_bias = unembed_direction(model, target_id, versus_id)
    u = effective_direction(params, scale, direction)

    def share(name: str) -> torch.Tensor:
        return cache[name][0, p].float() @ u

    constants = _constant_shares(params, direction, unembed_bias)
    embed = float(share("blocks.0.resid_pre"))
    attn = [float(share(f"blocks.{layer}.attn_out")) for layer in range(model.n_layers)]
    mlp = [float(share(f"blocks.{layer}.mlp_out")) for layer in range(model.n_layers)]
    heads = [(cache[f"blocks.{layer}.attn.head_out"][0, p].float() @ u).tolist() for layer in range(model.n_layers)]
    has_bias = model.weights.has("b_O")
    attn_bias = [a - sum(h) for a, h in zip(attn, heads, strict=True)] if has_bias else None

    cumulative = _cumulative(embed + sum(constants.values()), attn, mlp)
    lens, normalised = _lens_logits(model, final_norm, cache, p, direction, unembed_bias)

    logits = model.logits_at(run, [p])[0].float()
    logit = float(logits[target_id] - (logits[versus_id] if versus_id is not None else 0.0))

    neurons = _top_neurons(model, cache, p, u, top_neurons) if top_neurons else []

    return LogitAttribution(
        model=model.name,
        prompt=prompt,
        position=p,
        context_token=model.tokenizer.decode([int(tokens[0, p])]),
        target=model.tokenizer.decode([target_id]),
        target_id=target_id,
        versus=None if versus_id is None else model.tokenizer.decode([versus_id]),
        versus_id=versus_id,
        logit=logit,
        normalised_logit=normalised,
        softcapped=bool(getattr(model.config, "final_logit_softcapping", None)),
        final_scale=float(scale),
        embed=embed,
        attn=attn,
        mlp=mlp,
        heads=heads,
        attn_bias=attn_bias,
        constants=constants,
        cumulative=cumulative,
        lens=lens,
        top_neurons=neurons,
    )
