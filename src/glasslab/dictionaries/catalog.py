"""Which SAEs can be loaded for a model: shipped with glasslab, trained into the store, and well-known hub
releases for its name (``glasslab sae list``, the workbench's SAE menu). Nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import GlasslabError
from ..model.model import Model
from ..store import SAES, list_artifacts
from ..views.explanations import explanation
from ..views.figures import Bars, Figure
from ..views.result import Record, Result
from .files import WEIGHTS_FILE, read_config
from .hub import RELEASES, Release, same_model
from .labels_file import LABELS_FILE
from .loading import fits_quietly, shipped
from .sae_config import SAEConfig


@dataclass(frozen=True)
class KnownSAE(Record):
    """An SAE that can be loaded for a model: pass ``name`` to ``load_sae``."""

    name: str
    source: str  # "shipped", "store" or "hub"
    hook: str
    d_sae: int | None
    architecture: str | None
    on_disk: bool  # shipped, in the store, or already in the Hugging Face cache
    neuronpedia: str | None = None
    labels: bool = False  # a labels.json is beside it


def available_saes(model: Model) -> list[KnownSAE]:
    """SAEs known for ``model``: shipped with glasslab, trained into the store, and well-known hub releases
    for its name (on disk or not). Nothing is downloaded."""
    found: list[KnownSAE] = []
    for folder, cfg in shipped():
        if fits_quietly(cfg, model):
            found.append(_known(f"default:{folder.name}", "shipped", cfg, folder))
    for saved in list_artifacts(SAES, model.key):  # complete ones only: no staging, nothing damaged
        try:
            cfg = read_config(saved.path)
        except GlasslabError:
            continue
        if fits_quietly(cfg, model):
            found.append(_known(f"store:{saved.name}", "store", cfg, saved.path))
    for release in RELEASES.values():
        if not same_model(release.model, model.name):
            continue
        for sae_id in release.listed:
            match = release.match(sae_id)
            groups = match.groupdict()
            hook = release.hook.format(**groups) if release.hook else _saelens_hook(groups)
            if not _hook_exists(model, hook):
                continue
            found.append(
                KnownSAE(
                    name=f"{release.name}/{sae_id}",
                    source="hub",
                    hook=hook,
                    d_sae=_width(groups.get("width")),
                    architecture="jumprelu" if release.layout == "gemma_scope" else None,
                    on_disk=_cached(release, sae_id),
                    neuronpedia=release.neuronpedia_id(match),
                )
            )
    return found


def _known(name: str, source: str, cfg: SAEConfig, folder: Path) -> KnownSAE:
    return KnownSAE(
        name, source, cfg.hook, cfg.d_sae, cfg.architecture, True, cfg.neuronpedia_id, (folder / LABELS_FILE).is_file()
    )


def _saelens_hook(groups: dict[str, str]) -> str:
    return f"blocks.{groups['layer']}.{groups['hook'].removeprefix('hook_')}"


def _hook_exists(model: Model, hook: str) -> bool:
    try:
        model.hook_spec(hook)
    except GlasslabError:
        return False
    return True


_WIDTHS = {"4k": 4096, "16k": 16384, "32k": 32768, "65k": 65536, "131k": 131072, "262k": 262144, "524k": 524288}


def _width(text: str | None) -> int | None:
    """Gemma Scope's width names are rounded powers of two ("65k" is 65536, "1m" is 2**20)."""
    return {**_WIDTHS, "1m": 1048576}.get(text or "")


def _cached(release: Release, sae_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    name = WEIGHTS_FILE if release.layout == "saelens" else release.params_file
    return isinstance(try_to_load_from_cache(release.repo, f"{release.folder(sae_id)}/{name}"), str)


@dataclass(frozen=True)
class SAECatalog(Result):
    """``available_saes`` as a result (for ``glasslab sae list`` and the app)."""

    kind: ClassVar[str] = "sae_list"

    model: str
    saes: list[KnownSAE]

    def figure(self) -> Figure:
        bars = Bars(
            "features per SAE",
            [sae.name for sae in self.saes],
            [float(sae.d_sae or 0) for sae in self.saes],
            "features (0: known once downloaded)",
            hover=[
                f"{sae.name}: {sae.source}, {sae.hook}, {'on disk' if sae.on_disk else 'download needed'}"
                for sae in self.saes
            ],
        )
        return Figure(f"{self.model}: SAEs known for this model", [bars], **explanation(self.kind))
