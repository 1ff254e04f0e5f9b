"""Observation operations: predictions, attention, head roles, direct logit attribution, neurons, generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from ..methods.attribute.dla import LogitAttribution, logit_attribution
from ..methods.lenses.logit_lens import LogitLens, logit_lens
from ..methods.lenses.tuned_lens import load_tuned_lens
from ..methods.observe.attention import Attention, attention
from ..methods.observe.head_roles import HeadRoles, head_roles
from ..methods.observe.neurons import NeuronsAtPosition, top_neurons
from ..methods.observe.overview import Overview, overview
from ..methods.observe.predict import Prediction, predict
from ..methods.observe.resid_stats import ResidNorms, resid_norms
from ..model.generation import Generation
from ..model.model import Model
from ..model.run import Run
from .options import MAX_K, MAX_LIST, MAX_NEW_TOKENS, Cli, Index, Options, Position, Prompt, PromptOptions, Seed, Token
from .spec import OperationSpec

TopK = Annotated[int, Field(ge=1, le=MAX_K)]
LastPosition = Annotated[Position, Field(description="Token position (-1: the last).")]
Versus = Annotated[Token | None, Field(description="Decompose logit(target) - logit(versus) instead (e.g. ' John').")]


class PredictOptions(PromptOptions):
    k: Annotated[TopK, Field(description="How many top tokens to show."), Cli(("-k", "--top-k"))] = 10
    position: Annotated[Position, Field(description="Predict after this token (-1: the last).")] = -1
    target: Annotated[Token | None, Field(description="Also score this token (e.g. ' Paris').")] = None


class AttentionOptions(PromptOptions):
    layer: Annotated[
        Index | None, Field(description="Layer of the head to show in full (default: a focused head).")
    ] = None
    head: Annotated[Index | None, Field(description="Head to show in full (needs layer).")] = None
    query_position: Annotated[Position, Field(description="The token whose reads to list (-1: the last).")] = -1
    top_k: Annotated[TopK, Field(description="How many key tokens to list per head."), Cli(("--top-k", "-k"))] = 5
    all_patterns: Annotated[bool, Field(description="Also every head's full pattern (short prompts only).")] = False


class HeadRolesOptions(Options):
    prompt: Annotated[Prompt | None, Field(description="Also score the heads on this text (optional).")] = None
    seq_len: Annotated[int, Field(ge=4, le=256, description="Length of each random half of a sequence.")] = 50
    n_seqs: Annotated[int, Field(ge=1, le=64, description="How many random sequences to average over.")] = 16
    seed: Annotated[Seed, Field(description="Random seed for the generated sequences.")] = 0
    batch_size: Annotated[int, Field(ge=1, le=64, description="Sequences per forward pass.")] = 16


class DlaOptions(PromptOptions):
    target: Annotated[
        Token | None, Field(description="The token whose logit to decompose (default: the model's top prediction).")
    ] = None
    versus: Versus = None
    position: LastPosition = -1
    top_neurons: Annotated[
        int, Field(ge=0, le=MAX_K, description="How many top neurons to list."), Cli(("--neurons",))
    ] = 10


class NeuronsOptions(PromptOptions):
    position: LastPosition = -1
    layer: Annotated[Index | None, Field(description="Only this layer (default: rank over all layers).")] = None
    top: Annotated[TopK, Field(description="How many neurons to list.")] = 10
    target: Annotated[Token | None, Field(description="Also rank by direct share of this token's logit.")] = None
    versus: Versus = None


class ResidNormsOptions(PromptOptions):
    top: Annotated[TopK, Field(description="How many outliers to list.")] = 10


class GenerateOptions(PromptOptions):
    max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="How many tokens to add.")] = 30
    temperature: Annotated[
        float, Field(ge=0.0, le=5.0, description="0 for greedy decoding; higher samples more freely.")
    ] = 0.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0, description="Nucleus sampling threshold (with temperature > 0).")] = (
        1.0
    )
    seed: Annotated[Seed | None, Field(description="Random seed, for repeatable sampling.")] = None


class OverviewOptions(PromptOptions):
    k: Annotated[TopK, Field(description="How many next tokens to show."), Cli(("-k", "--top-k"))] = 10
    position: Annotated[Position, Field(description="The position to analyse (-1: the last token).")] = -1


class LogitLensOptions(PromptOptions):
    k: Annotated[
        int, Field(ge=1, le=20, description="Top tokens kept per layer and position."), Cli(("-k", "--top-k"))
    ] = 5
    target: Annotated[Token | None, Field(description="Follow this token's probability (e.g. ' Paris').")] = None
    positions: Annotated[
        list[Position] | None,
        Field(max_length=MAX_LIST, description="Decode only these positions (-1: the last; default: all)."),
        Cli(("--position", "-p")),
    ] = None
    candidates: Annotated[
        list[Token] | None,
        Field(max_length=20, description="Follow these tokens through the layers."),
        Cli(("--candidate", "-c")),
    ] = None
    candidate_position: Annotated[
        Position, Field(description="Where candidates are followed (-1: the last token).")
    ] = -1
    tuned: Annotated[bool, Field(description="Use the stored tuned lens instead of the logit lens.")] = False
    lens: Annotated[str | None, Field(description="A tuned-lens folder (default: the one stored for the model).")] = (
        None
    )


def look_through(
    model: Model,
    prompt: str,
    *,
    k: int = 5,
    target: str | None = None,
    positions: Sequence[int] | None = None,
    candidates: Sequence[str] | None = None,
    candidate_position: int = -1,
    tuned: bool = False,
    lens: str | None = None,
    run: Run | None = None,
) -> LogitLens:
    """``logit_lens``, through the stored tuned lens when ``tuned`` (or the one in the folder ``lens``)."""
    translators = load_tuned_lens(model, lens) if tuned or lens else None
    return logit_lens(
        model,
        prompt,
        k=k,
        target=target,
        positions=positions,
        candidates=candidates,
        candidate_position=candidate_position,
        lens=translators,
        run=run,
    )


def direct_logit_attribution(
    model: Model,
    prompt: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    position: int = -1,
    top_neurons: int = 10,
    run: Run | None = None,
) -> LogitAttribution:
    """``logit_attribution`` whose target defaults to the model's top prediction at ``position``."""
    if target is None:
        target = predict(model, prompt, k=1, position=position, run=run).top[0].token_id
    return logit_attribution(
        model, prompt, target=target, versus=versus, position=position, top_neurons=top_neurons, run=run
    )


GROUP = "analysis"
OPERATIONS = [
    OperationSpec(
        "predict",
        PredictOptions,
        predict,
        Prediction,
        "Show the most likely next tokens with their probabilities and logits, and each token's loss.",
        GROUP,
        python_only=frozenset({"run"}),
    ),
    OperationSpec(
        "attention",
        AttentionOptions,
        attention,
        Attention,
        "Show where every attention head looks: per-head summaries and which earlier tokens a token reads.",
        GROUP,
        server_only=frozenset({"all_patterns"}),
        python_only=frozenset({"run"}),
    ),
    OperationSpec(
        "head-roles",
        HeadRolesOptions,
        head_roles,
        HeadRoles,
        "Score every head as previous-token, induction, duplicate-token and attention-sink head.",
        GROUP,
        long=True,
    ),
    OperationSpec(
        "overview",
        OverviewOptions,
        overview,
        Overview,
        "Predictions, the logit lens, direct logit attribution and attention from one forward pass.",
        GROUP,
        python_only=frozenset({"run"}),
    ),
    OperationSpec(
        "logit-lens",
        LogitLensOptions,
        look_through,
        LogitLens,
        "What each layer would predict next: decode every layer's residual stream with the model's own unembedding.",
        GROUP,
        local_only=frozenset({"tuned", "lens"}),
        python_only=frozenset({"run"}),
    ),
    OperationSpec(
        "dla",
        DlaOptions,
        direct_logit_attribution,
        LogitAttribution,
        "Direct logit attribution: each layer's, head's and neuron's direct share of a logit (difference).",
        GROUP,
        python_only=frozenset({"run"}),
    ),
    OperationSpec(
        "neurons",
        NeuronsOptions,
        top_neurons,
        NeuronsAtPosition,
        "The most active MLP neurons at a position, and the ones that push a target logit most directly.",
        GROUP,
    ),
    OperationSpec(
        "resid-norms",
        ResidNormsOptions,
        resid_norms,
        ResidNorms,
        "Norms of the residual stream and of each attention/MLP write, per layer and position, with outliers.",
        GROUP,
    ),
    OperationSpec(
        "generate",
        GenerateOptions,
        Model.generate,
        Generation,
        "Continue a prompt, greedily or by sampling.",
        GROUP,
        python_only=frozenset({"interventions", "prepend_bos"}),
        long=True,
    ),
]
