"""Every kind of artifact glasslab keeps in the store, declared once: where it lives, what a complete one
holds, and how names are checked so that a name can never point outside its folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""A name in the store: a letter or digit, then up to 99 of letters, digits, ``.``, ``_``, ``-``. No
separator, no leading dot (so never ``.``, ``..`` or a hidden staging folder), nothing that escapes."""
_NAME = re.compile(NAME_PATTERN[1:-1])
_MODEL_KEY = re.compile(r"[A-Za-z0-9._-]{1,255}")  # Model.key: the model's name made safe, layers, config hash


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact: ``<store>/<folder>[/<model key>][/<below_model>]/<name>``.

    ``files`` are what a complete artifact holds (checked before it is trusted, listed or loaded);
    ``name_parts`` > 1 lets a name span fixed sub-folders (each part a valid name); ``paths`` says whether
    a local folder may stand in for a name (the Python API and CLI allow it for some kinds; the HTTP API
    never does). ``hint`` says how to make one; ``{name}`` in it is filled in.
    """

    name: str
    folder: str
    per_model: bool
    describe: str
    files: tuple[str, ...] = ()
    below_model: str = ""
    name_parts: int = 1
    paths: bool = False
    hint: str = ""


MODELS = ArtifactKind("model", "models", per_model=False, describe="converted model", files=("glasslab.json",))
GGUF_MODELS = ArtifactKind(
    "gguf-model", "models/gguf", per_model=False, describe="converted GGUF model", files=("glasslab.json",)
)
STEERING = ArtifactKind(
    "steering",
    "steering",
    per_model=True,
    describe="steering vector",
    files=("vector.safetensors", "vector.json"),
    paths=True,
    hint="make one with: glasslab steering-vector --positive ... --negative ... --layer L --save {name}",
)
TUNED_LENS = ArtifactKind(
    "tuned-lens",
    "tuned-lens",
    per_model=True,
    describe="tuned lens",
    files=("lens.safetensors", "lens.json"),
    paths=True,
    hint="train one with: glasslab tuned-lens train",
)
"""Names: ``lens`` (the trained lens), ``checkpoint`` and ``kl-checkpoint`` (resumable training state)."""
EDITS = ArtifactKind(
    "edit",
    "editing",
    per_model=True,
    describe="saved edit",
    files=("delta.safetensors", "edit.json"),
    below_model="edits",
    paths=True,
    hint="make one with: glasslab edit ... --save NAME",
)
KEY_STATS = ArtifactKind(
    "key-stats",
    "editing",
    per_model=True,
    describe="key statistics",
    files=("moment.safetensors", "stats.json"),
    below_model="key-stats",
    name_parts=2,
)
"""Names: ``<corpus sample>/layer-<L>`` (see methods/editing/stats.py)."""
SAES = ArtifactKind(
    "sae",
    "saes",
    per_model=True,
    describe="SAE",
    files=("cfg.json", "sae_weights.safetensors"),
    paths=True,
    hint="train one with: glasslab sae train --hook blocks.L.resid_post --name {name}",
)
SAE_CHECKPOINTS = ArtifactKind("sae-checkpoint", "sae-checkpoints", per_model=True, describe="SAE training checkpoint")
TRANSCODERS = ArtifactKind(
    "transcoders",
    "transcoders",
    per_model=True,
    describe="transcoder set",
    files=("transcoders.json",),
    paths=True,
    hint="train one with glasslab.dictionaries.transcoder_train.train_transcoders(model, config, name='{name}')",
)
"""One set per folder: ``transcoders.json`` and a SAELens-layout folder per layer (``layer-<L>/``)."""
TRANSCODER_CHECKPOINTS = ArtifactKind(
    "transcoder-checkpoint", "transcoder-checkpoints", per_model=True, describe="transcoder training checkpoint"
)
SAE_LABELS = ArtifactKind(
    "sae-labels", "sae-labels", per_model=False, describe="fetched SAE labels", files=("labels.json",)
)
SAE_USER_LABELS = ArtifactKind(
    "sae-user-labels", "sae-user-labels", per_model=False, describe="your SAE labels", files=("labels.json",)
)
EXPERIMENTS = ArtifactKind("experiments", "", per_model=False, describe="experiment database")
"""One SQLite file at the store's top: ``location(EXPERIMENTS, name=EXPERIMENTS_FILE)``."""
EXPERIMENTS_FILE = "experiments.sqlite"
WORDNET = ArtifactKind("wordnet", "wordnet", per_model=False, describe="WordNet copy")
"""A single folder, ``location(WORDNET)``: the WordNet data copied out of its package for nltk."""

KINDS: dict[str, ArtifactKind] = {
    kind.name: kind
    for kind in (
        MODELS,
        GGUF_MODELS,
        STEERING,
        TUNED_LENS,
        EDITS,
        KEY_STATS,
        SAES,
        SAE_CHECKPOINTS,
        TRANSCODERS,
        TRANSCODER_CHECKPOINTS,
        SAE_LABELS,
        SAE_USER_LABELS,
        EXPERIMENTS,
        WORDNET,
    )
}


def is_name(text: object) -> bool:
    """Whether ``text`` is a valid store name (see NAME_PATTERN); never true for a path."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def check_name(name: str, kind: ArtifactKind) -> str:
    """``name`` if it is a valid name of ``kind`` (``name_parts`` valid names joined by ``/``), else InputError."""
    parts = name.split("/") if isinstance(name, str) else [name]
    if len(parts) != kind.name_parts or not all(is_name(part) for part in parts):
        shape = "/".join(["NAME"] * kind.name_parts)
        raise InputError(
            f"{kind.describe} name {str(name)[:120]!r} is not valid: use {shape}, each a letter or digit then up to "
            "99 letters, digits, '.', '_' or '-'"
        )
    return name


def check_model_key(key: str | None, kind: ArtifactKind) -> str:
    """A model key that stays one folder (as ``Model.key`` makes them), else InputError."""
    if not isinstance(key, str) or not _MODEL_KEY.fullmatch(key) or key in (".", ".."):
        raise InputError(f"{kind.describe}: {str(key)[:120]!r} is not a model key (see Model.key)")
    return key
