"""Comparisons: two prompts, two models (loaded by the operation itself), head composition, the side effects
of an intervention, and which upstream SAE features drive which downstream ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..dictionaries.loading import load_sae
from ..errors import InputError
from ..interventions import Ablate, Add
from ..methods.compare.alignment import RULES
from ..methods.compare.composition import Composition, head_composition
from ..methods.compare.feature_influence import FeatureInfluence, feature_influence
from ..methods.compare.generations import GenerationComparison, compare_generations
from ..methods.compare.models import compare_models
from ..methods.compare.models_result import ModelComparison
from ..methods.compare.prompts import METHODS, PromptComparison, compare_prompts
from ..methods.compare.side_effects import NEUTRAL_PROMPTS, SideEffects, side_effects
from ..methods.intervene.steering import load_steering_vector
from ..methods.observe.head_roles import head_roles
from ..model.model import Model
from .options import (
    MAX_K,
    MAX_LIST,
    MAX_REFERENCE,
    MAX_SEEDS,
    Cli,
    HeadRef,
    Index,
    Metric,
    NeuronRef,
    Options,
    Position,
    Prompt,
    PromptOptions,
    Token,
    VectorName,
)
from .spec import OperationSpec

Top = Annotated[int, Field(ge=1, le=1000, description="How many of the largest changes to list.")]
Target = Annotated[Token | None, Field(description="The token the metric reads (e.g. ' Mary'); loss and kl need none.")]
Versus = Annotated[Token | None, Field(description="Measure logit(target) - logit(versus) (e.g. ' John').")]
SaeSource = Annotated[
    str, Field(min_length=1, max_length=1000, description="An SAE: a folder, default:HOOK, store:NAME or RELEASE/ID.")
]


class ComparePromptsOptions(Options):
    prompt_a: Annotated[Prompt, Field(description="Prompt A."), Cli(argument=True)]
    prompt_b: Annotated[Prompt, Field(description="Prompt B, compared with A."), Cli(argument=True)]
    method: Annotated[
        Literal[METHODS],  # type: ignore[valid-type]
        Field(description="predict, attention, logit_lens, dla, neurons or sae (with sae)."),
    ] = "predict"
    align: Annotated[
        Literal[RULES],  # type: ignore[valid-type]
        Field(description="auto, position, right, left, prefix_suffix or lcs (see docs/compare.md)."),
    ] = "auto"
    position: Annotated[
        Position, Field(description="Compared position: negative counts from each prompt's end; else A's, mapped to B.")
    ] = -1
    target: Target = None
    versus: Versus = None
    top: Annotated[int, Field(ge=1, le=MAX_K, description="How many of the largest changes to list.")] = 10
    sae: Annotated[SaeSource | None, Field(description="The SAE of method sae (see glasslab sae).")] = None


class CompositionOptions(Options):
    top: Top = 10
    n_random: Annotated[int, Field(ge=1, le=1000, description="Random weight draws for the baseline.")] = 32
    roles: Annotated[
        bool, Field(description="Also find previous-token and induction heads and label the pairs with them.")
    ] = False
    role_threshold: Annotated[float, Field(ge=0.0, le=1.0, description="Role score from which a head is labelled.")] = (
        0.3
    )
    seed: Annotated[
        int, Field(ge=0, le=MAX_SEEDS, description="Seed of the random baseline and the role sequences.")
    ] = 0


class SideEffectsOptions(Options):
    prompt: Annotated[
        Prompt | None, Field(description="The target prompt the intervention is meant to change."), Cli(argument=True)
    ] = None
    target: Target = None
    versus: Versus = None
    metric: Annotated[Metric | None, Field(description="The metric (default: logit_diff with versus, else logit).")] = (
        None
    )
    ablate_head: Annotated[
        list[HeadRef] | None, Field(max_length=MAX_LIST, description="Zero-ablate these heads (LAYER.HEAD, e.g. 5.1).")
    ] = None
    ablate_neuron: Annotated[
        list[NeuronRef] | None, Field(max_length=MAX_LIST, description="Zero-ablate these neurons (LAYER.NEURON).")
    ] = None
    steer: Annotated[
        str | None, Field(max_length=1000, description="Add a saved steering vector (name; locally also a folder).")
    ] = None
    scale: Annotated[float, Field(ge=-1000.0, le=1000.0, description="Steering scale for steer.")] = 4.0
    corpus: Annotated[
        str, Field(max_length=1000, description="Reference text: builtin, a .txt/.jsonl file or folder, or none.")
    ] = "builtin"
    sequences: Annotated[int, Field(ge=1, le=1024, description="Reference sequences.")] = 8
    seq_len: Annotated[int, Field(ge=2, le=2048, description="Tokens per reference sequence.")] = 64
    neutral: Annotated[
        list[Prompt] | None,
        Field(max_length=MAX_REFERENCE, description="Neutral prompts (default: a built-in handful)."),
    ] = None


class FeaturesOptions(PromptOptions):
    upstream: Annotated[SaeSource, Field(description="The upstream SAE (earlier hook): folder, default:HOOK, ...")]
    downstream: Annotated[SaeSource, Field(description="The downstream SAE (later hook).")]
    position: Annotated[Position, Field(description="Position of the downstream features (-1: the last token).")] = -1
    features: Annotated[
        list[Index] | None,
        Field(max_length=MAX_LIST, description="Downstream features to explain."),
        Cli(("--feature", "-f")),
    ] = None
    downstream_top: Annotated[
        int, Field(ge=1, le=100, description="Without features: the most active ones, how many.")
    ] = 5
    max_edges: Annotated[int, Field(ge=1, le=1000, description="Edges kept in the graph (the strongest).")] = 20
    verify: Annotated[
        int, Field(ge=0, le=100, description="Check this many strongest edges by zeroing the source feature.")
    ] = 3


ModelSource = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class CompareModelsOptions(Options):
    model_a: Annotated[
        ModelSource,
        Field(description="Model A: hub id, folder or .gguf ('default' for the offline one)."),
        Cli(argument=True),
    ]
    model_b: Annotated[ModelSource, Field(description="Model B, compared with A."), Cli(argument=True)]
    corpus: Annotated[
        str | None, Field(max_length=1000, description="builtin, a .txt/.jsonl file or folder, or hf:NAME.")
    ] = None
    prompt: Annotated[
        list[Prompt] | None,
        Field(max_length=MAX_LIST, description="Compare on these prompts instead (repeatable)."),
        Cli(("--prompt", "-p")),
    ] = None
    sequences: Annotated[int, Field(ge=1, le=1_000_000, description="Corpus sequences to compare on.")] = 16
    seq_len: Annotated[int, Field(ge=1, le=1_000_000, description="Tokens per corpus sequence.")] = 64
    batch_size: Annotated[int, Field(ge=1, le=65_536, description="Sequences per forward pass.")] = 4
    top: Top = 10
    text: Annotated[
        bool, Field(description="Only put the continuations side by side (for models with different tokenizers).")
    ] = False
    max_new_tokens: Annotated[int, Field(ge=1, le=10_000, description="Tokens to generate per prompt with --text.")] = (
        20
    )


def two_models(
    load: Callable[[str | None], Model],
    model_a: str,
    model_b: str,
    *,
    corpus: str | None = None,
    prompt: Sequence[str] | None = None,
    sequences: int = 16,
    seq_len: int = 64,
    batch_size: int = 4,
    top: int = 10,
    text: bool = False,
    max_new_tokens: int = 20,
) -> ModelComparison | GenerationComparison:
    """``compare_models`` on two models ``load`` reads ('default': the offline one), or with ``text`` their
    continuations of ``prompt`` side by side (``compare_generations``)."""
    if text and not prompt:
        raise InputError("--text compares continuations of prompts; give at least one --prompt")
    a, b = (load(None if source == "default" else source) for source in (model_a, model_b))
    if text:
        return compare_generations(a, b, list(prompt or ()), max_new_tokens=max_new_tokens)
    sizes = dict(sequences=sequences, seq_len=seq_len, batch_size=batch_size, top=top)
    return compare_models(a, b, corpus=corpus, prompts=prompt, **sizes)


def two_prompts(
    model: Model,
    prompt_a: str,
    prompt_b: str,
    *,
    method: str = "predict",
    align: str = "auto",
    position: int = -1,
    target: str | None = None,
    versus: str | None = None,
    top: int = 10,
    sae: str | None = None,
) -> PromptComparison:
    """``compare_prompts``, with the SAE of method sae loaded from its source."""
    return compare_prompts(
        model,
        prompt_a,
        prompt_b,
        method=method,
        align_rule=align,
        position=position,
        target=target,
        versus=versus,
        k=top,
        sae=load_sae(sae, model) if sae else None,
    )


def composition(
    model: Model, *, top: int = 10, n_random: int = 32, roles: bool = False, role_threshold: float = 0.3, seed: int = 0
) -> Composition:
    """``head_composition``, with the pairs labelled by head roles found first when ``roles``."""
    found = head_roles(model, seed=seed) if roles else None
    return head_composition(model, top=top, n_random=n_random, seed=seed, roles=found, role_threshold=role_threshold)


def intervention_side_effects(
    model: Model,
    prompt: str | None = None,
    *,
    target: str | None = None,
    versus: str | None = None,
    metric: str | None = None,
    ablate_head: Sequence[tuple[int, int]] | None = None,
    ablate_neuron: Sequence[tuple[int, int]] | None = None,
    steer: str | None = None,
    scale: float = 4.0,
    corpus: str = "builtin",
    sequences: int = 8,
    seq_len: int = 64,
    neutral: Sequence[str] | None = None,
) -> SideEffects:
    """``side_effects`` of the named ablations and steering vector ('none': no reference corpus)."""
    interventions = [Ablate(f"blocks.{layer}.attn.z", head=head) for layer, head in ablate_head or []]
    interventions += [Ablate(f"blocks.{layer}.mlp.post", neuron=neuron) for layer, neuron in ablate_neuron or []]
    if steer:
        vector = load_steering_vector(model, steer)
        interventions.append(Add(vector.hook, vector=vector.vector, scale=scale))
    if not interventions:
        raise InputError("nothing to apply; give --ablate-head, --ablate-neuron or --steer")
    return side_effects(
        model,
        interventions,
        prompt=prompt,
        target=target,
        versus=versus,
        metric=metric,
        corpus=None if corpus == "none" else corpus,
        sequences=sequences,
        seq_len=seq_len,
        neutral=neutral or NEUTRAL_PROMPTS,
    )


def feature_graph(
    model: Model,
    prompt: str,
    *,
    upstream: str,
    downstream: str,
    position: int = -1,
    features: Sequence[int] | None = None,
    downstream_top: int = 5,
    max_edges: int = 20,
    verify: int = 3,
) -> FeatureInfluence:
    """``feature_influence`` between the SAEs loaded from ``upstream`` and ``downstream``."""
    return feature_influence(
        model,
        prompt,
        load_sae(upstream, model),
        load_sae(downstream, model),
        position=position,
        features=features or None,
        downstream_top=downstream_top,
        max_edges=max_edges,
        verify=verify,
    )


GROUP = "compare"
OPERATIONS = [
    OperationSpec(
        "compare-prompts",
        ComparePromptsOptions,
        two_prompts,
        PromptComparison,
        "Run one observation method on two prompts and show where they differ.",
        GROUP,
        # An SAE source may be a folder here or a download: a request compares without one.
        local_only=frozenset({"sae"}),
    ),
    OperationSpec(
        "compare-models",
        CompareModelsOptions,
        two_models,
        ModelComparison,
        "Compare two models: CKA per layer, output KL and loss, changed heads, prompts and positions.",
        GROUP,
        long=True,
        # It loads two models of its own (named by hub id or a folder on this machine); the server serves one.
        http=False,
        loads_models=True,
    ),
    OperationSpec(
        "compare-composition",
        CompositionOptions,
        composition,
        Composition,
        "Q-, K- and V-composition scores between heads (Elhage et al. 2021), with a random baseline.",
        GROUP,
        long=True,
    ),
    OperationSpec(
        "compare-side-effects",
        SideEffectsOptions,
        intervention_side_effects,
        SideEffects,
        "Did an intervention do its job without breaking anything else? Targeted effect, reference loss, KL.",
        GROUP,
        local_only=frozenset({"corpus"}),
        http_types=(("steer", VectorName | None),),
        long=True,
    ),
    OperationSpec(
        "compare-features",
        FeaturesOptions,
        feature_graph,
        FeatureInfluence,
        "Which upstream SAE features drive which downstream ones on a prompt (gradient x activation).",
        GROUP,
        long=True,
        # Both SAEs are named by a folder here or a hub download, which a request never may.
        http=False,
    ),
]
