"""Observation operations: tokens, overview, predictions, attention, head roles, logit lens, DLA, neurons,
generation.

The first screen's forward pass (every hook the overview reads) is kept per prompt, so selecting another
token, head or panel of the same prompt decodes from it instead of running the model again.
"""

from __future__ import annotations

from ..errors import InputError
from ..methods.attribute.dla import attribution_hooks
from ..methods.observe.overview import OVERVIEW_HOOKS
from ..model.run import Run
from ..operations import OPERATIONS as DECLARED
from ..operations.describe import split_prompt
from ..operations.observe import (
    AttentionOptions,
    DlaOptions,
    GenerateOptions,
    HeadRolesOptions,
    NeuronsOptions,
    OverviewOptions,
    PredictOptions,
)
from ..operations.options import MAX_ALL_PATTERNS, PromptOptions
from .ops import Ctx, Limits, declared
from .state import ModelState

NEURON_HOOKS = sorted({*OVERVIEW_HOOKS, *attribution_hooks(neurons=True)})


def shared_run(ctx: Ctx, prompt: str, *, neurons: bool = False) -> Run:
    """One forward pass of ``prompt`` caching what the overview, attention and DLA panels read (no logits:
    rows are decoded from ``ln_final`` on demand and memoised on the run). ``neurons``: also every MLP's
    neurons (for DLA's top neurons); a run with them serves the plain requests too."""
    ctx.prompt(prompt)
    with_neurons = ctx.state.peek_run(("shared+neurons", prompt))
    if with_neurons is not None:
        return with_neurons
    hooks, key = (NEURON_HOOKS, "shared+neurons") if neurons else (OVERVIEW_HOOKS, "shared")
    return ctx.state.cached_run((key, prompt), lambda: ctx.model.run(prompt, cache=hooks, logits=False))


def tokens(state: ModelState, limits: Limits, body: PromptOptions) -> dict:
    """The declared ``tokens`` operation, from the state's own tokenizer copy: it never waits behind model work."""
    loaded = state.loaded
    with state.tokenizer_lock:
        strip = split_prompt(loaded.model.name, body.prompt, loaded.tokenizer)
    model, n = loaded.model, len(strip.tokens)
    if n > limits.max_prompt_tokens or (model.context_length and n > model.context_length):
        most = min(limits.max_prompt_tokens, model.context_length or limits.max_prompt_tokens)
        raise InputError(f"prompt is {n} tokens; at most {most} are read here: shorten it")
    return strip.to_dict()


def overview_op(ctx: Ctx, body: OverviewOptions) -> dict:
    return _declared(ctx, "overview", body, run=shared_run(ctx, body.prompt))


def predict_op(ctx: Ctx, body: PredictOptions) -> dict:
    ctx.prompt(body.prompt)
    # Its own run with logits: the per-token losses need every position's distribution.
    run = ctx.state.cached_run(("logits", body.prompt), lambda: ctx.model.run(body.prompt))
    return _declared(ctx, "predict", body, run=run)


def attention_op(ctx: Ctx, body: AttentionOptions) -> dict:
    ctx.layer(body.layer)
    ctx.head(body.head)
    n = ctx.prompt(body.prompt)
    if body.all_patterns and n > MAX_ALL_PATTERNS:
        raise InputError(
            f"all_patterns: the prompt is {n} tokens; every head's pattern is sent only up to {MAX_ALL_PATTERNS} "
            "tokens (ask for one head with layer and head)"
        )
    spec = DECLARED["attention"]
    result = spec.function(ctx.model, **spec.arguments(body), run=shared_run(ctx, body.prompt))
    out = result.to_dict()
    if body.all_patterns:
        out["patterns"] = [
            {"layer": layer, "head": head, "pattern": result.pattern(layer, head).tolist()}
            for layer in range(ctx.model.n_layers)
            for head in range(ctx.model.n_heads)
        ]
    return out


def head_roles_op(ctx: Ctx, body: HeadRolesOptions) -> dict:
    if body.prompt is not None:
        ctx.prompt(body.prompt)
    return _declared(ctx, "head-roles", body)


def logit_lens_op(ctx: Ctx, body) -> dict:
    n = ctx.prompt(body.prompt)
    positions = body.positions if body.positions is not None else list(range(n))
    if len(positions) > ctx.limits.max_lens_positions:
        raise InputError(
            f"positions: the logit lens decodes every layer at each position; ask for at most "
            f"{ctx.limits.max_lens_positions} positions per call (this prompt has {n} tokens)"
        )
    spec = DECLARED["logit-lens"]
    arguments = spec.arguments(body) | {"positions": positions}
    return spec.function(ctx.model, **arguments, run=shared_run(ctx, body.prompt)).to_dict()


def dla_op(ctx: Ctx, body: DlaOptions) -> dict:
    return _declared(ctx, "dla", body, run=shared_run(ctx, body.prompt, neurons=body.top_neurons > 0))


def neurons_op(ctx: Ctx, body: NeuronsOptions) -> dict:
    ctx.prompt(body.prompt)
    ctx.layer(body.layer)
    return _declared(ctx, "neurons", body)


def generate_op(ctx: Ctx, body: GenerateOptions) -> dict:
    ctx.prompt(body.prompt)
    return _declared(ctx, "generate", body)


def _declared(ctx: Ctx, name: str, body, **python_only) -> dict:
    """The declared operation's function on the body, with what only the server passes (a shared run)."""
    spec = DECLARED[name]
    return spec.function(ctx.model, **spec.arguments(body), **python_only).to_dict()


def _seeded(body: GenerateOptions) -> bool:
    return body.temperature == 0.0 or body.seed is not None


OPERATIONS = [
    declared(DECLARED["tokens"], lambda ctx, body: tokens(ctx.state, ctx.limits, body), tokenizer_only=tokens),
    declared(DECLARED["overview"], overview_op),
    declared(DECLARED["predict"], predict_op),
    declared(DECLARED["attention"], attention_op),
    declared(DECLARED["head-roles"], head_roles_op),
    declared(DECLARED["logit-lens"], logit_lens_op),
    declared(DECLARED["dla"], dla_op),
    declared(DECLARED["neurons"], neurons_op),
    declared(DECLARED["generate"], generate_op, deterministic=_seeded),
]
