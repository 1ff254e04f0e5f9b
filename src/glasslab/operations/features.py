"""Sparse-autoencoder operations: the features on a prompt, a feature's dashboard, a search over the features'
labels.

An SAE is named as ``glasslab sae list`` and ``GET /api/saes`` list it (default: the first one on this
machine); locally it may also be a folder, which a request never names (``http_types``). The server resolves
the name against the loaded model itself and keeps loaded SAEs (app/saes.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from ..dictionaries.catalog import available_saes
from ..dictionaries.loading import load_sae
from ..dictionaries.sae import SAE
from ..errors import InputError
from ..methods.features.dashboard import FeatureDashboard, feature_dashboard
from ..methods.features.encode import FeatureActivations, FeatureTrace, feature_activations, sae_features
from ..methods.features.search import MAX_QUERY_CHARS, FeatureSearch, search_features
from ..model.model import Model
from .options import MAX_K, Cli, Index, Options, Prompt, PromptOptions
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


def open_sae(model: Model, name: str | None, any_model: bool = False) -> SAE:
    """The SAE called ``name`` (a listed name or a folder), or the first one on this machine for ``model``."""
    if name is None:
        on_disk = [known.name for known in available_saes(model) if known.on_disk]
        if not on_disk:
            raise InputError(f"no SAE is on this machine for {model.name}; name one with --sae (glasslab sae list)")
        name = on_disk[0]
    return load_sae(name, model, allow_other_model=any_model)


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
