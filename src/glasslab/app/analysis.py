"""Observation operations: tokens, overview, predictions, attention, head roles, logit lens, DLA, neurons,
generation.

The first screen's forward pass (every hook the overview reads) is kept per prompt, so selecting another
token, head or panel of the same prompt decodes from it instead of running the model again.
"""

from __future__ import annotations

from ..errors import InputError
from ..methods.attention import attention
from ..methods.dla import attribution_hooks, logit_attribution
from ..methods.head_roles import head_roles
from ..methods.logit_lens import logit_lens
from ..methods.neurons import top_neurons
from ..methods.overview import OVERVIEW_HOOKS, overview
from ..methods.predict import predict
from ..model.run import Run
from .ops import Ctx, Limits, Operation
from .schemas import (
    MAX_ALL_PATTERNS,
    AttentionBody,
    DlaBody,
    GenerateBody,
    HeadRolesBody,
    LogitLensBody,
    NeuronsBody,
    OverviewBody,
    PredictBody,
    TokensBody,
)
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


def tokens(state: ModelState, limits: Limits, body: TokensBody) -> dict:
    """The token strip, from the state's own tokenizer copy: it never waits behind model work. Same rule as
    Model.tokenize: BOS first when the tokenizer has one."""
    loaded = state.loaded
    with state.tokenizer_lock:
        ids = loaded.tokenizer(body.prompt, add_special_tokens=False)["input_ids"]
        bos = loaded.tokenizer.bos_token_id
        ids = [bos, *ids] if bos is not None else ids
        texts = [loaded.tokenizer.decode([t]) for t in ids]
    model = loaded.model
    if len(ids) > limits.max_prompt_tokens or (model.context_length and len(ids) > model.context_length):
        most = min(limits.max_prompt_tokens, model.context_length or limits.max_prompt_tokens)
        raise InputError(f"prompt is {len(ids)} tokens; at most {most} are read here: shorten it")
    return {
        "kind": "tokens",
        "model": model.name,
        "prompt": body.prompt,
        "n_tokens": len(ids),
        "tokens": [
            {"position": i, "token": text, "token_id": t} for i, (t, text) in enumerate(zip(ids, texts, strict=True))
        ],
    }


def overview_op(ctx: Ctx, body: OverviewBody) -> dict:
    run = shared_run(ctx, body.prompt)
    return overview(ctx.model, body.prompt, k=body.k, position=body.position, run=run).to_dict()


def predict_op(ctx: Ctx, body: PredictBody) -> dict:
    ctx.prompt(body.prompt)
    # Its own run with logits: the per-token losses need every position's distribution.
    run = ctx.state.cached_run(("logits", body.prompt), lambda: ctx.model.run(body.prompt))
    return predict(ctx.model, body.prompt, k=body.k, position=body.position, target=body.target, run=run).to_dict()


def attention_op(ctx: Ctx, body: AttentionBody) -> dict:
    ctx.layer(body.layer)
    ctx.head(body.head)
    n = ctx.prompt(body.prompt)
    if body.all_patterns and n > MAX_ALL_PATTERNS:
        raise InputError(
            f"all_patterns: the prompt is {n} tokens; every head's pattern is sent only up to {MAX_ALL_PATTERNS} "
            "tokens (ask for one head with layer and head)"
        )
    run = shared_run(ctx, body.prompt)
    result = attention(
        ctx.model,
        body.prompt,
        layer=body.layer,
        head=body.head,
        query_position=body.query_position,
        top_k=body.top_k,
        run=run,
    )
    out = result.to_dict()
    if body.all_patterns:
        out["patterns"] = [
            {"layer": layer, "head": head, "pattern": result.pattern(layer, head).tolist()}
            for layer in range(ctx.model.n_layers)
            for head in range(ctx.model.n_heads)
        ]
    return out


def head_roles_op(ctx: Ctx, body: HeadRolesBody) -> dict:
    if body.prompt is not None:
        ctx.prompt(body.prompt)
    return head_roles(
        ctx.model, body.prompt, seq_len=body.seq_len, n_seqs=body.n_seqs, seed=body.seed, batch_size=body.batch_size
    ).to_dict()


def logit_lens_op(ctx: Ctx, body: LogitLensBody) -> dict:
    n = ctx.prompt(body.prompt)
    positions = body.positions if body.positions is not None else list(range(n))
    if len(positions) > ctx.limits.max_lens_positions:
        raise InputError(
            f"positions: the logit lens decodes every layer at each position; ask for at most "
            f"{ctx.limits.max_lens_positions} positions per call (this prompt has {n} tokens)"
        )
    run = shared_run(ctx, body.prompt)
    return logit_lens(
        ctx.model,
        body.prompt,
        k=body.k,
        target=body.target,
        positions=positions,
        candidates=body.candidates,
        candidate_position=body.candidate_position,
        run=run,
    ).to_dict()


def dla_op(ctx: Ctx, body: DlaBody) -> dict:
    run = shared_run(ctx, body.prompt, neurons=body.top_neurons > 0)
    target = body.target
    if target is None:
        target = predict(ctx.model, body.prompt, k=1, position=body.position, run=run).top[0].token_id
    return logit_attribution(
        ctx.model,
        body.prompt,
        target=target,
        versus=body.versus,
        position=body.position,
        top_neurons=body.top_neurons,
        run=run,
    ).to_dict()


def neurons_op(ctx: Ctx, body: NeuronsBody) -> dict:
    ctx.prompt(body.prompt)
    ctx.layer(body.layer)
    return top_neurons(
        ctx.model,
        body.prompt,
        position=body.position,
        layer=body.layer,
        top=body.top,
        target=body.target,
        versus=body.versus,
    ).to_dict()


def generate_op(ctx: Ctx, body: GenerateBody) -> dict:
    ctx.prompt(body.prompt)
    return ctx.model.generate(
        body.prompt, max_new_tokens=body.max_new_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed
    ).to_dict()


def _seeded(body: GenerateBody) -> bool:
    return body.temperature == 0.0 or body.seed is not None


OPERATIONS = [
    Operation(
        "tokens",
        TokensBody,
        lambda ctx, body: tokens(ctx.state, ctx.limits, body),
        "The prompt's tokens (BOS first) with their ids.",
        "analysis",
        tokenizer_only=tokens,
    ),
    Operation(
        "overview",
        OverviewBody,
        overview_op,
        "The first screen from one forward pass: predictions, attention, logit lens, per-head DLA.",
        "analysis",
    ),
    Operation(
        "predict", PredictBody, predict_op, "Top next tokens, entropy, a target's rank, per-token loss.", "analysis"
    ),
    Operation(
        "attention", AttentionBody, attention_op, "Every head's summaries and one head's full pattern.", "analysis"
    ),
    Operation(
        "head-roles",
        HeadRolesBody,
        head_roles_op,
        "Previous-token, induction, duplicate and sink scores of every head.",
        "analysis",
        long=True,
    ),
    Operation(
        "logit-lens", LogitLensBody, logit_lens_op, "Layers x positions and layers x candidate tokens.", "analysis"
    ),
    Operation("dla", DlaBody, dla_op, "Direct logit attribution by layer, by head and by neuron.", "analysis"),
    Operation(
        "neurons", NeuronsBody, neurons_op, "The most active / most attributing neurons at a position.", "analysis"
    ),
    Operation(
        "generate",
        GenerateBody,
        generate_op,
        "Continue the prompt (greedy, or sampled with a seed).",
        "analysis",
        long=True,
        deterministic=_seeded,
    ),
]
