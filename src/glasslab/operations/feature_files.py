"""SAE operations about SAEs' files: listing the SAEs known for a model, writing a person's label of a feature
(kept in the store), precomputing every dashboard and label of an SAE trained later.

The server runs the precompute as a job off the model worker, on store SAEs only (app/sae_precompute.py);
locally an SAE saved in a folder may be named too, and another corpus scanned. The server answers labels
with SAEs named as ``GET /api/saes`` lists them (app/saes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ..dictionaries.catalog import SAECatalog, available_saes
from ..dictionaries.labels_file import FeatureLabel
from ..dictionaries.loading import labels_of, load_sae, origin_of
from ..dictionaries.sae import SAE
from ..dictionaries.user_labels import clear_feature_label, set_feature_label
from ..errors import InputError
from ..methods.features.labels import Described, precompute_features
from ..model.model import Model
from ..views.result import Result
from .features import AnyModel, SaeName, first_sae, open_sae
from .options import Cli, Index, Options
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec


@dataclass(frozen=True)
class Precomputed(Result):
    """What ``precompute`` wrote (the counts of ``Described.summary``), with the SAE as named and its folder."""

    kind = "sae_precompute"

    corpus: str
    sequences: int
    tokens: int
    dashboards: int
    labels: int
    concepts: int
    sae: str
    folder: str

    @classmethod
    def of(cls, described: Described, sae: str, folder: Path) -> Precomputed:
        counts = {key: value for key, value in described.summary().items() if key != "kind"}
        return cls(**counts, sae=sae, folder=str(folder))


class SaeListOptions(Options):
    pass


def sae_catalog(model: Model) -> SAECatalog:
    """The SAEs known for ``model``: shipped with glasslab, trained into the store, published on the hub."""
    return SAECatalog(model.name, available_saes(model))


@dataclass(frozen=True)
class LabelEdit(Result):
    """A person's label of a feature written or cleared: the label that shows now (None: no label)."""

    kind = "sae_label"
    json_keys = ("sae", "feature", "label")

    sae: str  # as named by the request or command
    feature: int
    label: FeatureLabel | None
    cleared: bool | None = None  # for a clear: whether a label of the person's was there to remove

    def _json_label(self) -> dict[str, Any] | None:
        return None if self.label is None else self.label.to_json()


class SaeLabelOptions(Options):
    sae: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=500),
        Field(
            description="The SAE, named as --sae elsewhere (glasslab sae list); a request may leave it out: the first "
            "on this machine."
        ),
        Cli(argument=True),
    ] = None
    feature: Annotated[Index, Field(description="The feature's index."), Cli(argument=True)]
    label: Annotated[
        str | None,
        StringConstraints(max_length=1000),  # set_feature_label says "at most 200" in its own words
        Field(description="Your label (one line, at most 200 characters)."),
        Cli(argument=True),
    ] = None
    clear: Annotated[bool, Field(description="Remove your label: the SAE's own shows again."), Cli(("--clear",))] = (
        False
    )
    any_model: AnyModel = False
    model: Annotated[
        str | None,
        Field(
            max_length=1000,
            description="Hub id, local folder or .gguf file: needed only for store:NAME or to check the SAE "
            "against it.",
        ),
        Cli(("--model", "-m")),
    ] = None


def write_label(sae: SAE, name: str, feature: int, label: str | None, clear: bool) -> LabelEdit:
    """Write ``label`` as the person's label of ``feature``, or with ``clear`` remove theirs."""
    if clear == (label is not None):
        raise InputError("give the label's text, or --clear to remove your label (not both)")
    if clear:
        had = clear_feature_label(sae, feature)
        return LabelEdit(name, feature, labels_of(sae).get(feature), cleared=had)
    return LabelEdit(name, feature, set_feature_label(sae, feature, label or ""))


def label_feature(
    load: Callable[[str | None], Model],
    feature: int,
    *,
    sae: str | None = None,
    label: str | None = None,
    clear: bool = False,
    any_model: bool = False,
    model: str | None = None,
) -> LabelEdit:
    """``write_label`` on the SAE named; a model is loaded only where one is needed: to find a store SAE or
    the first one on this machine, or to check the SAE against the ``model`` named."""
    if clear == (label is not None):  # before any model or SAE loads
        raise InputError("give the label's text, or --clear to remove your label (not both)")
    needs_model = model is not None or sae is None or sae.startswith("store:")
    loaded = load(model) if needs_model else None
    name = first_sae(loaded) if sae is None and loaded is not None else sae
    return write_label(load_sae(name, loaded, allow_other_model=any_model), name, feature, label, clear)


class PrecomputeOptions(Options):
    sae: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="An SAE trained into the store (store:NAME); locally also a folder."),
        Cli(("--sae", "-s")),
    ]
    sequences: Annotated[
        int, Field(ge=1, le=8192, description="Train-split sequences scanned for contexts and labels.")
    ] = 1024
    held_out_sequences: Annotated[
        int,
        Field(ge=1, le=2048, description="Test-split sequences on which each label's detection score is measured."),
    ] = 256
    corpus: Annotated[
        str | None,
        Field(max_length=500, description="Corpus to scan (default: the SAE's training corpus, else builtin)."),
    ] = None
    any_model: AnyModel = False
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0
    on_cluster: Annotated[
        bool, Field(description="Scan on the Ray cluster the server was started with (glasslab serve --cluster).")
    ] = False


def precompute(
    model: Model,
    *,
    sae: str,
    sequences: int = 1024,
    held_out_sequences: int = 256,
    corpus: str | None = None,
    any_model: bool = False,
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> Precomputed:
    """Write labels.json (automatic labels with detection scores) and every feature's dashboard beside an SAE
    saved in a folder of yours (the store or a path), so its dashboards open at once; ``cluster`` scans the
    corpus on Ray."""
    if sae.startswith("default:"):
        raise InputError("shipped SAEs come with their dashboards and labels precomputed; nothing to do")
    chosen = open_sae(model, sae, any_model)
    origin = origin_of(chosen)
    if origin.folder is None or origin.release is not None:
        raise InputError(f"'{sae}' is not saved in a folder of yours (store:NAME or a path); nothing was written")
    options = {"corpus": corpus} if corpus else {}
    described = precompute_features(
        model,
        chosen,
        origin.folder,
        sequences=sequences,
        held_out_sequences=held_out_sequences,
        cluster=cluster,
        workers=workers,
        worker_gpus=worker_gpus,
        **options,
    )
    return Precomputed.of(described, sae, origin.folder)


GROUP = "sae"
OPERATIONS = [
    OperationSpec(
        "sae-list",
        SaeListOptions,
        sae_catalog,
        SAECatalog,
        "SAEs known for the model: shipped with glasslab, trained into the store, published on the hub.",
        GROUP,
    ),
    OperationSpec(
        "sae-label",
        SaeLabelOptions,
        label_feature,
        LabelEdit,
        "Write your own label of a feature, kept in glasslab's store; it replaces the SAE's label everywhere.",
        GROUP,
        # A request labels an SAE of the server's model, named as GET /api/saes lists it (never a folder).
        local_only=frozenset({"any_model", "model"}),
        http_types=(("sae", SaeName | None),),
        loads_models=True,
    ),
    OperationSpec(
        "sae-precompute",
        PrecomputeOptions,
        precompute,
        Precomputed,
        "Precompute every dashboard and automatic label (with detection scores) of an SAE trained into the store.",
        GROUP,
        long=True,
        # A request never names a cluster or its workers: only the operator decides where the server runs work.
        local_only=frozenset({"corpus", "any_model", "cluster", "workers", "worker_gpus"}),
        http_types=(("sae", SaeName),),
        server_only=frozenset({"on_cluster"}),  # the operator's cluster (glasslab serve --cluster), never named
    ),
]
