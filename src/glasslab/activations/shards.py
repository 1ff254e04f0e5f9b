"""The sharded activation store's format: shard files and the manifest, in a local folder or any fsspec URL.

A harvest folder holds ``harvest.json`` (the manifest) and ``shard-NNNNNN.safetensors`` files. A shard holds,
for a run of consecutive packed sequences, one ``[rows, width]`` tensor per hook (one row per non-BOS
token), the sequences' ``tokens`` and each token's ``documents`` index (the corpus document it came
from; BOS -1). The manifest records the settings that determine every shard (model key, hooks, dtype,
corpus, sequence length, shard size), each finished shard's rows, sequences, documents and SHA-256, and
whether the harvest is complete. Every file is written under a temporary name and moved into place, so a
reader never sees half a shard, and a shard is listed only once its file is in place.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import fsspec
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..errors import GlasslabError, InputError

MANIFEST = "harvest.json"
FORMAT = 1
TOKENS, DOCUMENTS = "tokens", "documents"


@dataclass(frozen=True)
class HarvestSettings:
    """What determines every shard: a harvest resumes only with the same settings."""

    model: str  # the model's store key
    hooks: tuple[str, ...]
    dtype: str
    corpus: str
    split: str | None
    seq_len: int
    shard_sequences: int
    sequences: int  # the harvest's size in packed sequences (the last shard may be shorter)


@dataclass
class ShardRecord:
    index: int
    file: str
    rows: int
    sequences: int
    first_sequence: int
    documents: tuple[int, int]  # first and last corpus document the shard's tokens come from
    sha256: str
    bytes: int


@dataclass
class Manifest:
    settings: HarvestSettings
    widths: dict[str, int] = field(default_factory=dict)
    shards: dict[int, ShardRecord] = field(default_factory=dict)
    complete: bool = False

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards.values())

    def ordered(self) -> list[ShardRecord]:
        return [self.shards[index] for index in sorted(self.shards)]

    def to_json(self) -> str:
        record = {
            "format": FORMAT,
            "settings": asdict(self.settings),
            "widths": self.widths,
            "complete": self.complete,
            "rows": self.rows,
            "shards": [asdict(shard) for shard in self.ordered()],
        }
        return json.dumps(record, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            record = json.loads(text)
            if record.get("format") != FORMAT:
                raise InputError(f"'{where}' is harvest format {record.get('format')}, this glasslab reads {FORMAT}")
            raw = record["settings"]
            settings = HarvestSettings(**{**raw, "hooks": tuple(raw["hooks"])})
            shards = {}
            for item in record["shards"]:
                shard = ShardRecord(**{**item, "documents": tuple(item["documents"])})
                if shard.file != shard_name(shard.index):  # a doctored manifest names no file outside the folder
                    raise ValueError(f"shard {shard.index} is named '{shard.file}'")
                shards[shard.index] = shard
            return cls(settings, dict(record["widths"]), shards, bool(record["complete"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"'{where}' is not a glasslab harvest manifest ({exc}); harvest again") from None


class ShardFolder:
    """A harvest's folder (local path or fsspec URL): atomic writes, checked reads."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, self.root = fsspec.core.url_to_fs(str(url))
        except (ImportError, ValueError) as exc:
            raise InputError(f"cannot open '{url}' ({exc}); give a folder or an fsspec URL") from None
        local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        # A local folder by its absolute path: workers (and Ray Train's ranks) run in folders of their own.
        self.url = self.root if local else str(url)

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    @contextmanager
    def _storage(self, action: str) -> Iterator[None]:
        """A storage failure (a folder not writable, an endpoint nothing answers at, credentials refused) as
        a one-line error: each fsspec backend raises exceptions of its own (botocore's for S3, OSError here)."""
        try:
            yield
        except GlasslabError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(
                f"cannot {action} '{self.url}' ({first}); check the folder or URL and its access"
            ) from None

    def write(self, name: str, data: bytes) -> None:
        """``data`` as ``name``, in place only once complete."""
        with self._storage("write to"):
            self.fs.makedirs(self.root, exist_ok=True)
            partial = self.path(f".{name}.{uuid.uuid4().hex[:8]}.partial")
            with self.fs.open(partial, "wb") as out:
                out.write(data)
            self.fs.mv(partial, self.path(name))

    def forget_listing(self) -> None:
        """Drop fsspec's cached listing of the folder: other processes (workers, other nodes, a harvest run
        again elsewhere) write here, and s3fs would answer sizes and existence from a listing it made
        earlier (a rewritten manifest then fails to read)."""
        self.fs.invalidate_cache(self.root)

    def read(self, name: str) -> bytes:
        with self._storage("read"):
            self.forget_listing()
            with self.fs.open(self.path(name), "rb") as source:
                return source.read()

    def manifest(self) -> Manifest | None:
        with self._storage("read"):
            self.forget_listing()
            if not self.fs.exists(self.path(MANIFEST)):
                return None
        return Manifest.from_json(self.read(MANIFEST).decode(), f"{self.url}/{MANIFEST}")

    def save_manifest(self, manifest: Manifest) -> None:
        self.write(MANIFEST, manifest.to_json().encode())

    def remove_partials(self) -> None:
        """Files a write left behind when it failed (a worker killed mid-write): never part of the harvest."""
        with self._storage("clean up"):
            self.forget_listing()
            if self.fs.exists(self.root):
                for path in self.fs.ls(self.root, detail=False):
                    if posixpath.basename(path).endswith(".partial"):
                        self.fs.rm(path)

    def remove_all(self) -> None:
        """Every shard, manifest and partial file of a harvest (``fresh``); other files are left alone."""
        with self._storage("clear"):
            self.forget_listing()
            if not self.fs.exists(self.root):
                return
            for path in self.fs.ls(self.root, detail=False):
                name = posixpath.basename(path)
                if name == MANIFEST or name.startswith("shard-") or name.endswith(".partial"):
                    self.fs.rm(path)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def encode_shard(tensors: dict[str, torch.Tensor]) -> tuple[bytes, str]:
    """A shard's bytes and their SHA-256."""
    data = save_tensors({name: tensor.contiguous() for name, tensor in tensors.items()})
    return data, hashlib.sha256(data).hexdigest()


def decode_shard(folder: ShardFolder, shard: ShardRecord) -> dict[str, torch.Tensor]:
    """A shard's tensors, refused if its bytes are not the ones the manifest records."""
    data = folder.read(shard.file)
    if hashlib.sha256(data).hexdigest() != shard.sha256:
        raise InputError(f"shard '{shard.file}' of '{folder.url}' is damaged (checksum differs); harvest again")
    return load_tensors(data)
