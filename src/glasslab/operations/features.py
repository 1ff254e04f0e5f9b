"""Sparse-autoencoder operations: the features on a prompt, a feature's dashboard, clamping features, an SAE's
quality on held-out text, a search over the features' labels.

An SAE is named as ``glasslab sae list`` and ``GET /api/saes`` list it (default: the first one on this
machine); locally it may also be a folder, which a request never names (``http_types``). The server resolves
the name against the loaded model itself and keeps loaded SAEs (app/saes.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..dictionaries.catalog import available_saes
from ..dictionaries.loading import load_sae
from ..dictionaries.sae import SAE
from ..errors import InputError
from ..methods.features.clamp import FeatureClamp, FeatureClampSweep, clamp_features, clamp_sweep
from ..methods.features.dashboard import FeatureDashboard, feature_dashboard
from ..methods.features.encode import FeatureActivations, FeatureTrace, feature_activations, sae_features
from ..methods.features.evaluate import SAEEvaluation, evaluate_sae
from ..methods.features.search import MAX_QUERY_CHARS, FeatureSearch, search_features
from ..model.model import Model
from .options import (
    MAX_K,
    MAX_LIST,
    MAX_NEW_TOKENS,
    MAX_SCALES,
    Cli,
    Index,
    Options,
    Position,
    Prompt,
    PromptOptions,
    Seed,
)
from .spec import OperationSpec

# A name from GET /api/saes (shipped, in the store, or a known hub release): over HTTP never a path.
SaeName = Annotated[str, StringConstraints(min_length=1, max_length=300)]
SaeOption = Annotated[
    str | None,
    Field(
        max_length=500,
        description="The SAE: a name from glasslab sae list (default: the first on this machine); locally also "
        "a folder.",
    ),
    Cli(("--sae", "-s")),
]
AnyModel = Annotated[bool, Field(description="Use the SAE even though it names another model (same shape required).")]


def first_sae(model: Model) -> str:
    """The name of the first SAE on this machine for ``model`` (what an SAE option left out means)."""
    on_disk = [known.name for known in available_saes(model) if known.on_disk]
    if not on_disk:
        raise InputError(f"no SAE is on this machine for {model.name}; name one with --sae (glasslab sae list)")
    return on_disk[0]


def open_sae(model: Model, name: str | None, any_model: bool = False) -> SAE:
    """The SAE called ``name`` (a listed name or a folder), or the first one on this machine for ``model``."""
    return load_sae(first_sae(model) if name is None else name, model, allow_other_model=any_model)


class SaeFeaturesOptions(PromptOptions):
    sae: SaeOption = None
    top: Annotated[int, Field(ge=1, le=MAX_K, description="Features shown per token.")] = 5
    max_density: Annotated[
        float | None,
        Field(
            ge=0.0,
            le=1.0,
            description="Set apart features that fire on more than this share of tokens (e.g. 0.1: dense ones).",
        ),
    ] = None
    any_model: AnyModel = False


class SaeSearchOptions(Options):
    query: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS),
        Field(description="Words to look for, e.g. 'medical' or 'past tense'."),
        Cli(argument=True),
    ]
    sae: SaeOption = None
    top: Annotated[int, Field(ge=1, le=MAX_K, description="Features to show.")] = 20
    exclude_dense: Annotated[bool, Field(description="Skip features that fire on more than 10% of tokens.")] = False
    any_model: AnyModel = False


class FeatureDashboardOptions(Options):
    feature: Annotated[Index, Field(description="The feature's index."), Cli(argument=True)]
    sae: SaeOption = None
    sequences: Annotated[
        int | None, Field(ge=1, le=512, description="Sequences to scan live (default: precomputed, else 64).")
    ] = None
    seq_len: Annotated[
        int | None, Field(ge=8, le=256, description="Tokens per sequence of a live scan (default 64).")
    ] = None
    k: Annotated[int, Field(ge=1, le=50, description="Top-activating contexts to keep.")] = 10
    text: Annotated[
        Prompt | None, Field(description="Instead of a dashboard: the feature's activation on every token of TEXT.")
    ] = None
    corpus: Annotated[
        str | None,
        Field(
            max_length=500,
            description="Scan this corpus live (builtin, a .txt/.jsonl file or folder, or hf:NAME) instead of "
            "reading the SAE's precomputed dashboards.",
        ),
    ] = None
    window: Annotated[
        int | None, Field(ge=0, le=256, description="Tokens shown either side of a live scan's peaks (8).")
    ] = None
    fetch_label: Annotated[
        bool, Field(description="Ask Neuronpedia for a label if none is cached (skipped offline).")
    ] = False
    any_model: AnyModel = False


def dashboard(
    model: Model,
    feature: int,
    *,
    sae: str | None = None,
    sequences: int | None = None,
    seq_len: int | None = None,
    k: int = 10,
    text: str | None = None,
    corpus: str | None = None,
    window: int | None = None,
    fetch_label: bool = False,
    any_model: bool = False,
) -> FeatureDashboard | FeatureTrace:
    """A feature's dashboard (``feature_dashboard``), or with ``text`` its activation on every token of it."""
    chosen = open_sae(model, sae, any_model)
    if text is not None:
        return feature_activations(model, chosen, feature, text)
    scan = dict(corpus=corpus, sequences=sequences, seq_len=seq_len, k=k, window=window)
    return feature_dashboard(model, chosen, feature, fetch_label=fetch_label, **scan)


Amount = Annotated[float, Field(ge=-1e4, le=1e4)]


def parse_amounts(text: str, flag: str) -> list[float]:
    """'0,5,10' -> [0.0, 5.0, 10.0] for --sweep, finite numbers only (like every number the CLI takes)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{flag} must be comma-separated numbers like 0,5,10; got '{text}'") from None
    bad = next((value for value in values if not math.isfinite(value)), None)
    if bad is not None:
        raise InputError(f"--{flag} must be finite numbers, not {bad}")
    return values


class FeatureClampOptions(PromptOptions):
    """The workbench sends ``mode`` and ``amount`` (the server's own spelling, turned into ``value``, ``scale``
    or ``zero`` by app/saes.py); the command line and Python name the clamp directly."""

    sae: SaeOption = None
    features: Annotated[
        list[Index], Field(min_length=1, max_length=64, description="Features to clamp."), Cli(("--feature", "-f"))
    ]
    mode: Annotated[
        Literal["value", "scale", "zero"], Field(description="Set the features to amount, scale them, or zero them.")
    ] = "value"
    amount: Annotated[Amount | None, Field(description="The value or scale (not for zero).")] = None
    value: Annotated[Amount | None, Field(description="Set the features to this value.")] = None
    scale: Annotated[Amount | None, Field(description="Multiply the features by this factor.")] = None
    zero: Annotated[bool, Field(description="Set the features to 0.")] = False
    amounts: Annotated[
        list[Amount] | None,
        Field(
            min_length=1,
            max_length=MAX_SCALES,
            description="A sweep: the values (or factors) to clamp to, one continuation each, e.g. 0,5,10,20.",
        ),
        Cli(("--sweep",), parse=parse_amounts, whole=True),
    ] = None
    sweep_scale: Annotated[bool, Field(description="The sweep's numbers are factors.")] = False
    positions: Annotated[
        list[Position] | None,
        Field(max_length=MAX_LIST, description="Clamp only at these positions (-1: the prompt's last)."),
        Cli(("--position", "-p")),
    ] = None
    max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="How many tokens to generate.")] = 20
    temperature: Annotated[
        float, Field(ge=0.0, le=5.0, description="0 for greedy decoding; higher samples (same seed).")
    ] = 0.0
    seed: Annotated[Seed | None, Field(description="Random seed for sampling.")] = None
    any_model: AnyModel = False


def clamp(
    model: Model,
    prompt: str,
    *,
    features: Sequence[int],
    sae: str | None = None,
    value: float | None = None,
    scale: float | None = None,
    zero: bool = False,
    amounts: Sequence[float] | None = None,
    sweep_scale: bool = False,
    positions: Sequence[int] | None = None,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    seed: int | None = None,
    any_model: bool = False,
) -> FeatureClamp | FeatureClampSweep:
    """``clamp_features`` (exactly one of value, scale and zero), or ``clamp_sweep`` over ``amounts``."""
    chosen = sum((value is not None, scale is not None, zero))
    if amounts is not None and chosen:
        raise InputError("amounts (--sweep) replace value/scale/zero; give only the sweep's numbers")
    if amounts is None and chosen != 1:
        raise InputError("choose exactly one of value, scale, zero (--value, --scale, --zero), or a --sweep")
    options = dict(positions=positions, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    loaded = open_sae(model, sae, any_model)
    if amounts is not None:
        mode = "scale" if sweep_scale else "value"
        return clamp_sweep(model, loaded, prompt, list(features), list(amounts), mode=mode, **options)
    return clamp_features(model, loaded, prompt, list(features), value=value, scale=scale, zero=zero, **options)


class SaeEvalOptions(Options):
    sae: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="A folder, default:HOOK, store:NAME, RELEASE/ID or OWNER/REPO."),
        Cli(("--sae",)),
    ]
    corpus: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="builtin (offline text), a .txt/.jsonl file or folder, or hf:NAME. Its test split."),
    ] = "builtin"
    tokens: Annotated[
        int, Field(ge=1, le=100_000_000, description="Held-out tokens for L0, variance explained, dead/dense features.")
    ] = 32768
    loss_tokens: Annotated[
        int, Field(ge=0, le=10_000_000, description="Held-out tokens for the loss-recovered figures (4 full passes).")
    ] = 2048
    seq_len: Annotated[
        int | None,
        Field(ge=1, le=1_000_000, description="Tokens per packed sequence (default: the SAE's training context)."),
    ] = None


def evaluate(
    model: Model,
    *,
    sae: str,
    corpus: str = "builtin",
    tokens: int = 32768,
    loss_tokens: int = 2048,
    seq_len: int | None = None,
) -> SAEEvaluation:
    """``evaluate_sae`` with the SAE named."""
    chosen = open_sae(model, sae)
    return evaluate_sae(model, chosen, corpus=corpus, tokens=tokens, loss_tokens=loss_tokens, seq_len=seq_len)


def features_on(
    model: Model,
    prompt: str,
    *,
    sae: str | None = None,
    top: int = 5,
    max_density: float | None = None,
    any_model: bool = False,
) -> FeatureActivations:
    """``sae_features`` with the SAE named (or the first on this machine)."""
    return sae_features(model, open_sae(model, sae, any_model), prompt, top=top, max_density=max_density)


def search(
    model: Model,
    query: str,
    *,
    sae: str | None = None,
    top: int = 20,
    exclude_dense: bool = False,
    any_model: bool = False,
) -> FeatureSearch:
    """``search_features`` with the SAE named (or the first on this machine)."""
    return search_features(model, open_sae(model, sae, any_model), query, top=top, exclude_dense=exclude_dense)


GROUP = "sae"
HTTP_SAE = (("sae", SaeName | None),)
OPERATIONS = [
    OperationSpec(
        "sae-features",
        SaeFeaturesOptions,
        features_on,
        FeatureActivations,
        "The strongest SAE features at every token.",
        GROUP,
        local_only=frozenset({"any_model"}),
        http_types=HTTP_SAE,
    ),
    OperationSpec(
        "sae-dashboard",
        FeatureDashboardOptions,
        dashboard,
        FeatureDashboard,
        "A feature's dashboard: top contexts over the corpus (precomputed when the SAE has them), histogram, "
        "promoted tokens.",
        GROUP,
        long=True,
        # A file or folder on this machine, the network, another model's SAE: local faces only.
        local_only=frozenset({"text", "corpus", "window", "fetch_label", "any_model"}),
        http_types=HTTP_SAE,
    ),
    OperationSpec(
        "sae-clamp",
        FeatureClampOptions,
        clamp,
        FeatureClamp,
        "Baseline vs features clamped (set, scaled or zeroed), or a sweep over amounts.",
        GROUP,
        long=True,
        server_only=frozenset({"mode", "amount"}),
        local_only=frozenset({"value", "scale", "zero", "sweep_scale", "any_model"}),
        http_types=HTTP_SAE,
    ),
    OperationSpec(
        "sae-eval",
        SaeEvalOptions,
        evaluate,
        SAEEvaluation,
        "Measure an SAE on held-out text: L0, variance explained, loss recovered, dead and dense features.",
        GROUP,
        long=True,
        http=False,  # reads a corpus named on this machine; the workbench evaluates while it trains
    ),
    OperationSpec(
        "sae-search",
        SaeSearchOptions,
        search,
        FeatureSearch,
        "Find an SAE's features by words or meaning over their labels (offline).",
        GROUP,
        local_only=frozenset({"any_model"}),
        http_types=HTTP_SAE,
    ),
]
