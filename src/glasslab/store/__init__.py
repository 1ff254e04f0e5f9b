"""glasslab's on-disk store: converted models, SAEs, transcoders, lenses, steering vectors, edits, statistics,
experiments.

The store is a per-user cache folder (``GLASSLAB_HOME`` overrides it). Every kind of artifact is declared
once (``kinds``); ``location``/``locate``/``resolve`` turn a checked name (or, where allowed, a folder) into
its place, ``list_artifacts`` lists what is saved, ``save`` writes atomically with a ``manifest.json`` that
readers verify, and ``replace_files`` rewrites files of a saved artifact, its manifest kept true. ``Checkpoints``
keeps resumable training state. docs/store.md describes the layout.
"""

from .artifacts import Artifact, ArtifactNotFound, list_artifacts, locate, location, resolve, save
from .checkpoints import Checkpoints
from .kinds import (
    EDITS,
    EXPERIMENTS,
    EXPERIMENTS_FILE,
    GGUF_MODELS,
    KEY_STATS,
    KINDS,
    MODELS,
    NAME_PATTERN,
    SAE_CHECKPOINTS,
    SAE_LABELS,
    SAE_USER_LABELS,
    SAES,
    STEERING,
    TRANSCODER_CHECKPOINTS,
    TRANSCODERS,
    TUNED_LENS,
    WORDNET,
    ArtifactKind,
    check_name,
    is_name,
)
from .manifest import MANIFEST, DamagedArtifact, read_manifest, verify
from .paths import STORE_ENV, atomic_directory, staging_folder, store_path, store_root
from .paths import _pid_alive as _pid_alive  # tests check the stale-partial rules through the package
from .paths import _pid_of as _pid_of
from .rewrite import replace_files

__all__ = [
    "EDITS",
    "EXPERIMENTS",
    "EXPERIMENTS_FILE",
    "GGUF_MODELS",
    "KEY_STATS",
    "KINDS",
    "MANIFEST",
    "MODELS",
    "NAME_PATTERN",
    "SAES",
    "SAE_CHECKPOINTS",
    "SAE_LABELS",
    "SAE_USER_LABELS",
    "STEERING",
    "STORE_ENV",
    "TRANSCODERS",
    "TRANSCODER_CHECKPOINTS",
    "TUNED_LENS",
    "WORDNET",
    "Artifact",
    "ArtifactKind",
    "ArtifactNotFound",
    "Checkpoints",
    "DamagedArtifact",
    "atomic_directory",
    "check_name",
    "is_name",
    "list_artifacts",
    "locate",
    "location",
    "read_manifest",
    "replace_files",
    "resolve",
    "save",
    "staging_folder",
    "store_path",
    "store_root",
    "verify",
]
