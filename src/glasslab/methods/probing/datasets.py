"""Labelled probing datasets: a user's CSV/JSONL file, or one of the built-in generated sets.

Each example is a text, a class label, the token position to read (``"last"``, a token index counted with
BOS as position 0 and negatives from the end, or a word of the text, read at its last token) and the
word type it belongs to. The word type drives two things: cross-validation folds keep each word in one
fold (so a probe is scored on words it never saw), and control tasks give each word type a random
label (Hewitt & Liang 2019). A file without a ``group`` column uses the token at the chosen position.

The built-in sets are generated from word lists written here, with a fixed seed, so they work offline
and give the same examples every time:

- ``number``: grammatical number of a noun (singular / plural), read at the noun; word type: the lemma;
- ``city``: whether "<city> is in <country>." is true, read at the final period; word type: the city;
- ``sentiment``: positive / negative templated reviews, read at the final period; word type: the adjective.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import InputError

Position = str | int  # "last", a token index, or a word of the text
REQUIRED = ("text", "label")
OPTIONAL = ("position", "group")
_INDEX = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class ProbeExample:
    text: str
    label: str
    position: Position = "last"
    group: str | None = None  # word type; None: the token at the position
    source: str = ""  # where it came from ("data.csv line 4"), for error messages


@dataclass(frozen=True)
class ProbeDataset:
    """A named list of labelled examples; ``classes`` are the sorted distinct labels."""

    name: str
    examples: tuple[ProbeExample, ...]
    description: str = ""
    positive: str | None = None  # the class a probe direction points to (None: the last class in sorted order)

    def __post_init__(self) -> None:
        if not self.examples:
            raise InputError(f"the probing dataset '{self.name}' has no examples")
        counts = Counter(e.label for e in self.examples)
        if len(counts) < 2:
            only = next(iter(counts))
            raise InputError(
                f"the probing dataset '{self.name}' has one class only ('{only}'); a probe needs at least two labels"
            )
        rare = [label for label, n in counts.items() if n < 2]
        if rare:
            raise InputError(f"class '{rare[0]}' of '{self.name}' has a single example; give each class at least two")
        if self.positive is not None and self.positive not in counts:
            raise InputError(
                f"'{self.positive}' is not a class of '{self.name}' (classes: {', '.join(sorted(counts))})"
            )

    @property
    def classes(self) -> list[str]:
        return sorted({e.label for e in self.examples})

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, count: int, seed: int = 0) -> ProbeDataset:
        """``count`` examples drawn at random (seeded), for quick looks and tests."""
        if count >= len(self.examples):
            return self
        chosen = sorted(random.Random(seed).sample(range(len(self.examples)), count))
        return replace(self, examples=tuple(self.examples[i] for i in chosen))


def parse_position(value: object, where: str) -> Position:
    """``"last"``, an integer (also written as text), or a word of the text."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return "last"
    if isinstance(value, bool):
        raise InputError(f"{where}: position must be 'last', a token index or a word, not {value}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if text == "last":
        return "last"
    return int(text) if _INDEX.match(text) else text


def _example(row: dict, where: str) -> ProbeExample:
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: the text is empty; every example needs a non-empty text")
    if label is None or (isinstance(label, str) and not label.strip()) or isinstance(label, list | dict):
        raise InputError(f"{where}: the label is missing or empty; give each example a label such as 'positive'")
    label_text = json.dumps(label) if isinstance(label, bool) else str(label).strip()
    group = row.get("group")
    group_text = None if group is None or str(group).strip() == "" else str(group).strip()
    return ProbeExample(text, label_text, parse_position(row.get("position"), where), group_text, where)


def _check_columns(columns: set[str], path: Path) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(
            f"{path.name} lacks column(s) {', '.join(repr(c) for c in missing)}; a probing file needs "
            "'text' and 'label' (optional: 'position' = last / a token index / a word, 'group' = the word type)"
        )


def _read_csv(path: Path, content: str) -> list[ProbeExample]:
    reader = csv.DictReader(content.splitlines())
    _check_columns(set(reader.fieldnames or ()), path)
    examples = []
    for row in reader:
        where = f"{path.name} line {reader.line_num}"
        if None in row:
            raise InputError(f"{where}: more fields than the header has columns; quote texts that contain commas")
        examples.append(_example(row, where))
    return examples


def _read_jsonl(path: Path, content: str) -> list[ProbeExample]:
    examples = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f'{where} is not valid JSON; each line must be an object like {{"text": "...", "label": "..."}}'
            ) from None
        if not isinstance(row, dict):
            raise InputError(
                f'{where} is not a JSON object; each line must look like {{"text": "...", "label": "..."}}'
            )
        _check_columns(set(row), path)
        examples.append(_example(row, where))
    return examples


def load_probe_file(path: str | Path) -> ProbeDataset:
    """A dataset from a ``.csv`` (with a header) or ``.jsonl`` file: ``text``, ``label`` [, ``position``, ``group``]."""
    file = Path(path).expanduser()
    if file.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"probing files must be .csv or .jsonl, got '{file.name}'")
    try:
        content = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"no such file: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file} as UTF-8 text ({type(exc).__name__})") from None
    if not content.strip():
        raise InputError(f"{file.name} is empty; it needs a header and at least two labelled examples")
    reader = _read_csv if file.suffix.lower() == ".csv" else _read_jsonl
    return ProbeDataset(file.stem, tuple(reader(file, content)), f"examples from {file}")


# -- built-in generated datasets -----------------------------------------------------------------------

_NOUNS = [
    ("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("car", "cars"), ("tree", "trees"), ("book", "books"),
    ("bird", "birds"), ("chair", "chairs"), ("table", "tables"), ("window", "windows"), ("flower", "flowers"),
    ("apple", "apples"), ("river", "rivers"), ("student", "students"), ("teacher", "teachers"),
    ("doctor", "doctors"), ("farmer", "farmers"), ("king", "kings"), ("horse", "horses"), ("garden", "gardens"),
    ("letter", "letters"), ("road", "roads"), ("ship", "ships"), ("cup", "cups"), ("door", "doors"),
    ("shoe", "shoes"), ("song", "songs"), ("boat", "boats"), ("lamp", "lamps"), ("coin", "coins"),
    ("box", "boxes"), ("bus", "buses"), ("church", "churches"), ("glass", "glasses"), ("dish", "dishes"),
    ("city", "cities"), ("baby", "babies"), ("story", "stories"), ("lady", "ladies"), ("party", "parties"),
    ("child", "children"), ("man", "men"), ("woman", "women"), ("mouse", "mice"), ("foot", "feet"),
    ("tooth", "teeth"), ("goose", "geese"), ("person", "people"), ("knife", "knives"), ("leaf", "leaves"),
    ("wolf", "wolves"), ("wife", "wives"),
]  # fmt: skip
_NUMBER_TEMPLATES = [
    "The {noun} near the window",
    "I think the {noun} in the garden",
    "Yesterday the old {noun} from the village",
    "She said that the {noun}",
]

_CITIES = {
    "France": ["Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Nice"],
    "Germany": ["Berlin", "Munich", "Hamburg", "Frankfurt", "Cologne", "Stuttgart"],
    "Italy": ["Rome", "Milan", "Naples", "Venice", "Florence", "Turin"],
    "Spain": ["Madrid", "Barcelona", "Seville", "Valencia", "Bilbao", "Malaga"],
    "Japan": ["Tokyo", "Osaka", "Kyoto", "Yokohama", "Nagoya", "Sapporo"],
    "England": ["London", "Manchester", "Liverpool", "Birmingham", "Leeds", "Bristol"],
    "China": ["Beijing", "Shanghai", "Shenzhen", "Guangzhou", "Chengdu", "Wuhan"],
    "India": ["Mumbai", "Delhi", "Bangalore", "Chennai", "Kolkata", "Hyderabad"],
}
_CITY_TEMPLATES = ["{city} is a city in {country}.", "The city of {city} is located in {country}."]

_POSITIVE = [
    "wonderful", "great", "excellent", "amazing", "fantastic", "delightful", "lovely", "superb", "brilliant",
    "pleasant", "enjoyable", "charming", "perfect", "beautiful", "outstanding", "impressive", "fun", "nice",
    "good", "terrific", "splendid", "fabulous", "magnificent", "marvelous",
]  # fmt: skip
_NEGATIVE = [
    "terrible", "awful", "horrible", "dreadful", "boring", "disappointing", "bad", "poor", "miserable",
    "disgusting", "unpleasant", "mediocre", "annoying", "dull", "lousy", "pathetic", "atrocious", "painful",
    "tedious", "awkward", "gloomy", "nasty", "ugly", "frustrating",
]  # fmt: skip
_THINGS = ["movie", "meal", "hotel", "book", "service", "concert", "trip", "party", "game", "show", "room", "class"]
_SENTIMENT_TEMPLATES = ["The {thing} was {adjective}.", "I thought the {thing} was really {adjective}."]
_SEED = 1234


def _number() -> ProbeDataset:
    examples = [
        ProbeExample(template.format(noun=form), label, form, singular, "builtin number")
        for singular, plural in _NOUNS
        for label, form in (("singular", singular), ("plural", plural))
        for template in _NUMBER_TEMPLATES
    ]
    return ProbeDataset("number", tuple(examples), "grammatical number of a noun, read at the noun", "plural")


def _city() -> ProbeDataset:
    """Each country is named in 12 true and 12 false statements (its i-th city is paired with the country i + 1
    places on), so neither the city nor the country alone gives the label away."""
    countries = sorted(_CITIES)
    examples = []
    for c, country in enumerate(countries):
        for i, city in enumerate(_CITIES[country]):
            wrong = countries[(c + 1 + i) % len(countries)]
            for template in _CITY_TEMPLATES:
                for label, named in (("true", country), ("false", wrong)):
                    examples.append(
                        ProbeExample(template.format(city=city, country=named), label, "last", city, "builtin city")
                    )
    return ProbeDataset("city", tuple(examples), "is '<city> is in <country>.' true? read at the final period", "true")


def _sentiment() -> ProbeDataset:
    rng = random.Random(_SEED)
    examples = []
    for label, adjectives in (("positive", _POSITIVE), ("negative", _NEGATIVE)):
        for adjective in adjectives:
            for template in _SENTIMENT_TEMPLATES:
                for thing in rng.sample(_THINGS, 3):
                    text = template.format(thing=thing, adjective=adjective)
                    examples.append(ProbeExample(text, label, "last", adjective, "builtin sentiment"))
    return ProbeDataset(
        "sentiment", tuple(examples), "sentiment of a templated review, read at the final period", "positive"
    )


BUILTIN = {"number": _number, "city": _city, "sentiment": _sentiment}


def load_probe_dataset(source: str | Path | ProbeDataset) -> ProbeDataset:
    """A built-in dataset by name (``number``, ``city``, ``sentiment``), or a ``.csv`` / ``.jsonl`` file."""
    if isinstance(source, ProbeDataset):
        return source
    text = str(source)
    if text in BUILTIN:
        return BUILTIN[text]()
    if Path(text).suffix.lower() in (".csv", ".jsonl"):
        return load_probe_file(text)
    raise InputError(
        f"unknown probing dataset '{text}'; use a built-in one ({', '.join(BUILTIN)}) or a .csv/.jsonl file "
        "with text and label columns"
    )
