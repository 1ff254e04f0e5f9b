"""Where text comes from: a stream of documents, never all of it in memory.

Sources:
- ``"builtin"``: the offline default, another name for ``"english"`` (the shipped SAEs were trained and
  labelled on it); a corpus loaded by this name describes itself as ``english``, so anything cached under
  the corpus's name (key statistics, tuned lenses) never mistakes text of an older default for it.
- ``"pydocs"``: text every Python installation ships: the reference manual's topics
  (``pydoc_data.topics``) and the standard library's docstrings (read with ``ast``, without importing any
  module). About 2 MB of English technical prose.
- ``"english"``: natural English shipped with glasslab, 4.2 million words from 13 sources whose licences
  allow redistribution (narrative, dialogue, encyclopedic and news-like reports, definitions, essays,
  instructions; ``data/english/manifest.json`` and docs/corpus.md give each source, its licence and size).
- ``"english-outside"``: two more English sources kept out of ``"english"`` entirely, for measuring on
  text a method never trained on.
- a ``.txt`` or ``.jsonl`` file, or a folder of them (``.jsonl`` lines carry a ``text`` field).
- ``"hf:NAME[:CONFIG]"``: a Hugging Face dataset, streamed (needs the ``datasets`` extra and a
  reachable hub or a local dataset cache).

Every source can be split by a stable hash of each document's id into ``"train"`` (90%) and
``"test"`` (10%), so held-out evaluation never sees training text.
"""

from __future__ import annotations

import ast
import hashlib
import json
import lzma
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError

Split = Literal["train", "test"] | None
_TEST_FRACTION = 0.1
_MIN_CHARS = 80  # shorter docstrings carry little text
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Corpus:
    """A named, re-iterable stream of documents."""

    source: str
    split: Split = None
    text_field: str = "text"

    def __iter__(self) -> Iterator[str]:
        for doc_id, text in self._documents():
            if self.split is None or _split_of(doc_id) == self.split:
                yield text

    def _documents(self) -> Iterator[tuple[str, str]]:
        if self.source in NAMED:
            yield from NAMED[self.source]()
        elif self.source.startswith("hf:"):
            yield from _hf_documents(self.source[3:], self.text_field)
        else:
            yield from _file_documents(Path(self.source).expanduser(), self.text_field)

    def describe(self) -> str:
        return self.source + (f" ({self.split} split)" if self.split else "")


def load_corpus(source: str = "builtin", *, split: Split = None, text_field: str = "text") -> Corpus:
    """A corpus by name (``NAMED``), a file or folder, or ``"hf:NAME[:CONFIG]"``; checked before streaming."""
    if split not in (None, "train", "test"):
        raise InputError(f"split must be 'train', 'test' or None, got {split!r}")
    if source not in NAMED and not source.startswith("hf:"):
        path = Path(source).expanduser()
        if not path.exists():
            names = ", ".join(f"'{name}'" for name in NAMED)
            raise InputError(f"corpus '{source}' is not one of {names}, 'hf:NAME' or an existing file or folder")
        if path.is_file() and path.suffix not in (".txt", ".jsonl"):
            raise InputError(f"corpus file '{source}' must end in .txt or .jsonl")
    return Corpus(canonical_corpus(source), split, text_field)


def canonical_corpus(source: str) -> str:
    """The name a corpus is known and cached by: ``"builtin"`` is the current default's own name."""
    return BUILTIN if source == "builtin" else source


def _split_of(doc_id: str) -> str:
    digest = hashlib.sha256(doc_id.encode()).digest()
    return "test" if digest[0] < 256 * _TEST_FRACTION else "train"


def _shipped_documents(file: str) -> Iterator[tuple[str, str]]:
    """The documents of one of glasslab's shipped English streams (one JSON object per line), read lazily."""
    with lzma.open(ENGLISH_FOLDER / file, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            record = json.loads(line)
            yield f"english:{record['source']}:{number}", record["text"]


def _pydocs_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"topic:{name}", topics[name]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if relative.parts[0] in ("test", "idlelib", "lib2to3", "site-packages", "tkinter") or "tests" in relative.parts:
            continue
        yield from _docstrings(path, str(relative))


def _docstrings(path: Path, label: str) -> Iterator[tuple[str, str]]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef))]
    for node in nodes:
        text = ast.get_docstring(node)
        if text and len(text) >= _MIN_CHARS:
            yield f"doc:{label}:{getattr(node, 'name', '')}:{getattr(node, 'lineno', 0)}", text


def _file_documents(path: Path, text_field: str) -> Iterator[tuple[str, str]]:
    """Each ``.txt`` paragraph (text between blank lines) or ``.jsonl`` line is a document.

    A document's id is its file's path inside the corpus plus its number, so the train/test split of a
    file or folder is the same wherever it lies, and a single ``.txt`` file splits by paragraph rather
    than falling wholly into one split.
    """
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
    for file in files:
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        if file.suffix == ".txt":
            yield from _paragraphs(file, name)
            continue
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"{file}:{number} is not valid JSON; each line must be one JSON object") from None
                if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                    raise InputError(f"{file}:{number} has no string field '{text_field}'; pass text_field=...")
                yield f"{name}:{number}", record[text_field]


def _hf_documents(spec: str, text_field: str) -> Iterator[tuple[str, str]]:
    try:
        import datasets
    except ImportError:
        raise InputError("Hugging Face datasets need the extra: pip install 'glasslab[datasets]'") from None
    name, _, config = spec.partition(":")
    try:
        stream = datasets.load_dataset(name, config or None, split="train", streaming=True)
    except Exception as exc:  # offline, unknown name, gated...
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"could not open dataset '{name}' ({first}); offline, use corpus 'builtin' or a local .txt/.jsonl"
        ) from None
    for index, record in enumerate(stream):
        text = record.get(text_field)
        if isinstance(text, str) and text.strip():
            yield f"{spec}:{index}", text


ENGLISH_FOLDER = Path(__file__).parent / "english"
# Corpora by name -> their (id, text) documents.
BUILTIN = "english"  # what "builtin" means
NAMED: dict[str, Callable[[], Iterator[tuple[str, str]]]] = {
    "builtin": lambda: NAMED[BUILTIN](),
    "pydocs": _pydocs_documents,
    "english": lambda: _shipped_documents("corpus.jsonl.xz"),
    "english-outside": lambda: _shipped_documents("outside.jsonl.xz"),
}


def _paragraphs(file: Path, name: str) -> Iterator[tuple[str, str]]:
    text = file.read_text(encoding="utf-8", errors="replace")
    blocks = (block.strip() for block in _BLANK_LINE.split(text))
    for number, block in enumerate((block for block in blocks if block), 1):
        yield f"{name}:{number}", block
