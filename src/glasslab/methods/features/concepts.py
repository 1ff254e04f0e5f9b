"""Name the concept a feature's top words share, through WordNet's noun hypernyms (at label-building time).

A feature that fires on " doctor", " nurse" and " surgeon" is better read as "health professional" than
as three tokens. Given the words a feature fires on in its top contexts (with how often), this finds the
most specific WordNet noun class that covers most of them (by count), and its members, so the label can
name it and the detection score can test whether the class, not just the seen words, predicts the
feature on held-out text.

WordNet is read through ``nltk`` (the ``labels`` extra) from Debian's ``wordnet-base`` files
(``/usr/share/wordnet``), ``GLASSLAB_WORDNET``, or nltk's own data. Without them labels fall back to the
words alone; nothing else depends on this module.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...store import WORDNET, atomic_directory, location

WORDNET_ENV = "GLASSLAB_WORDNET"
_DEBIAN = Path("/usr/share/wordnet")
_POS_FILES = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# Classes so broad that naming them says nothing about a feature.
_TOO_GENERAL = {
    "entity.n.01", "physical_entity.n.01", "abstraction.n.06", "object.n.01", "whole.n.02", "matter.n.03",
    "causal_agent.n.01", "psychological_feature.n.01", "attribute.n.02", "relation.n.01", "measure.n.02",
    "group.n.01", "artifact.n.01", "instrumentality.n.03", "communication.n.02", "event.n.01", "act.n.02",
    "living_thing.n.01", "organism.n.01", "state.n.02", "location.n.01", "thing.n.12",
}  # fmt: skip
_WORD = re.compile(r"[a-z][a-z'-]{2,}")


@dataclass(frozen=True)
class Concept:
    name: str  # readable, e.g. "health professional"
    synset: str  # WordNet id, e.g. "health_professional.n.01"
    covered: list[str]  # the feature's words it covers, most frequent first
    coverage: float  # share of the words' counts it covers
    members: frozenset[str]  # lower-case single-word lemmas under it (for the detection score)


def normalise(token: str) -> str:
    """The word a token stands for: stripped of spaces and the tokenizer's word marks, lower case (a token of
    spaces or line breaks alone stays itself)."""
    return token.replace("▁", " ").replace("Ġ", " ").strip().lower() or token


def wordnet():  # -> nltk WordNetCorpusReader | None
    """WordNet through nltk, or None when nltk or the database is missing (labels then name no concept).

    The folder is resolved on every call: the completed copy lives in the store, and the store can change
    (``GLASSLAB_HOME``) or lose the copy while the process runs; the reader is cached per folder."""
    try:
        import nltk  # noqa: F401
    except ImportError:
        return None
    folder = _database_folder()
    return _bundled_reader() if folder is None else _folder_reader(str(folder))


@functools.cache
def _bundled_reader():  # -> nltk WordNetCorpusReader | None
    """nltk's own downloaded WordNet, when the user has one."""
    try:
        from nltk.corpus import wordnet as bundled

        bundled.ensure_loaded()
        return bundled
    except (LookupError, OSError):
        return None


@functools.cache
def _folder_reader(folder: str):  # -> nltk WordNetCorpusReader
    """A reader over one WordNet folder (reading its index once per folder and process)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    nltk.data.path.append(folder)  # nltk reads only under folders it was told about

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping to nltk's own downloaded WordNet (only its multilingual data needs one)."""
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available": glasslab uses none
        warnings.simplefilter("ignore", UserWarning)
        return Reader(folder, None)


def _database_folder() -> Path | None:
    """A folder nltk can read: the configured or Debian WordNet, completed with the ``lexnames`` index that
    Debian's ``wordnet-base`` leaves out (nltk needs one; glasslab never reads the lexicographer names)."""
    configured = os.environ.get(WORDNET_ENV)
    source = Path(configured).expanduser() if configured else _DEBIAN
    if not (source / "data.noun").is_file():
        return None
    if (source / "lexnames").is_file():
        return source
    target = location(WORDNET)
    if not (target / "lexnames").is_file():
        with atomic_directory(target) as scratch:  # copies: nltk refuses links that leave its folder
            for item in source.iterdir():
                if item.is_file() and (item.name.startswith(("data.", "index.")) or item.suffix == ".exc"):
                    shutil.copyfile(item, scratch / item.name)
            numbers = _lexfile_numbers(source)
            lines = [f"{n:02d}\tlexfile{n:02d}\t{numbers.get(n, 1)}\n" for n in range(max(numbers) + 1)]
            (scratch / "lexnames").write_text("".join(lines), encoding="ascii")
    return target


def _lexfile_numbers(source: Path) -> dict[int, int]:
    """Lexicographer file number -> part-of-speech number, read from the data files' second field."""
    found: dict[int, int] = {}
    for pos, number in _POS_FILES.items():
        with open(source / f"data.{pos}", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.startswith(" "):
                    found.setdefault(int(line.split(" ", 2)[1]), number)
    return found


def shared_concept(words: Counter[str], *, min_words: int = 3, min_coverage: float = 0.6) -> Concept | None:
    """The most specific noun class covering at least ``min_coverage`` of ``words``' counts and at least
    ``min_words`` distinct words, or None (no WordNet, too few nouns, or nothing specific in common)."""
    reader = wordnet()
    if reader is None:
        return None
    total = sum(words.values())  # digits, punctuation and pieces count against a cover too
    words = Counter({w: c for w, c in words.items() if _WORD.fullmatch(w)})
    covers: dict[str, set[str]] = {}  # class -> words with one of their two commonest senses under it
    primary: dict[str, set[str]] = {}  # class -> words whose commonest sense is under it
    for word in words:
        for rank, synset in enumerate(reader.synsets(word, "n")[:2]):
            for ancestor in {synset, *synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}:
                covers.setdefault(ancestor.name(), set()).add(word)
                if rank == 0:
                    primary.setdefault(ancestor.name(), set()).add(word)
    candidates = [
        (sum(words[w] for w in covered), name, covered)
        for name, covered in covers.items()
        if name not in _TOO_GENERAL and len(covered) >= min_words
    ]
    candidates = [c for c in candidates if c[0] >= min_coverage * total]
    if not candidates:
        return None
    # The widest cover first (within a tenth of the words); among those, the class that most words reach
    # through their commonest sense ("ten" is a number before it is a playing card), then the most specific.
    widest = max(c[0] for c in candidates)
    depth = {name: reader.synset(name).min_depth() for _, name, _ in candidates}

    def preference(candidate: tuple[int, str, set[str]]) -> tuple:
        weight, name, _ = candidate
        return sum(words[w] for w in primary.get(name, ())), depth[name], weight, name

    best = max((c for c in candidates if c[0] >= widest - 0.1 * total), key=preference)
    if depth[best[1]] < 3:
        return None
    weight, name, covered = best
    synset = reader.synset(name)
    return Concept(
        name=synset.lemma_names()[0].replace("_", " "),
        synset=name,
        covered=sorted(covered, key=lambda w: (-words[w], w)),
        coverage=weight / total,
        members=_members(synset),
    )


def _members(synset) -> frozenset[str]:
    """Single-word lemmas of the class and every class under it, with their plurals' base forms."""
    names = set()
    for member in {synset, *synset.closure(lambda s: s.hyponyms() + s.instance_hyponyms())}:
        names.update(n.lower() for n in member.lemma_names() if "_" not in n)
    return frozenset(names)
