"""Facts to trace, rewrite and evaluate: a subject, a relation prompt and two answers.

A ``Fact`` follows the CounterFact layout (Meng et al. 2022): the relation prompt is a template with
``{}`` where the subject goes ("{} is located in the city of"), ``target_true`` is what the model says now
and ``target_new`` what an edit should make it say. ``paraphrases`` are other prompts about the same subject
and relation (generalisation), ``neighbours`` prompts about *other* subjects whose answer is also
``target_true`` (specificity: an edit should leave them alone). Targets are token texts with their leading
space (" Paris"); they may span several tokens.

``BUILTIN_FACTS`` were checked on the offline default, Gemma 3 270M: it predicts ``target_true`` as its top
token on every edit prompt and prefers it to ``target_new`` on every paraphrase and neighbour
(tests/test_editing_default.py re-checks this). ``load_facts`` reads user facts from JSON or JSONL, in this
layout or CounterFact's own records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError
from ...views.result import Record

_MAX_FACTS = 10_000


@dataclass(frozen=True)
class Fact(Record):
    """One fact to rewrite: ``prompt.format(subject)`` should be completed by ``target_true``, then ``target_new``."""

    subject: str
    prompt: str  # template with exactly one "{}" for the subject
    target_true: str
    target_new: str
    paraphrases: tuple[str, ...] = field(default=())
    neighbours: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("subject", "prompt", "target_true", "target_new"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"a fact needs a non-empty {name}; got {value!r}")
        if self.prompt.count("{}") != 1:
            raise InputError(
                f"the prompt template must contain '{{}}' exactly once where the subject goes, e.g. "
                f"'{{}} is located in'; got {self.prompt!r}"
            )
        if self.target_true == self.target_new:
            raise InputError(f"target_new equals target_true ({self.target_new!r}); give a different new answer")
        for name in ("paraphrases", "neighbours"):
            values = tuple(getattr(self, name))
            if any(not isinstance(v, str) or not v.strip() for v in values):
                raise InputError(f"the fact's {name} must be non-empty prompts")
            object.__setattr__(self, name, values)

    @property
    def text(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.format(self.subject)

    def describe(self) -> str:
        return f"{self.text}{self.target_true} -> {self.target_new}"


def fact_from_dict(record: object, where: str = "fact") -> Fact:
    """A fact from glasslab's layout or from a CounterFact record (``requested_rewrite`` etc.)."""
    if not isinstance(record, dict):
        raise InputError(f"{where} must be a JSON object with subject, prompt, target_true, target_new")
    try:
        if "requested_rewrite" in record:  # CounterFact: targets without their leading space
            rewrite = record["requested_rewrite"]
            return Fact(
                subject=rewrite["subject"],
                prompt=rewrite["prompt"],
                target_true=" " + rewrite["target_true"]["str"].strip(),
                target_new=" " + rewrite["target_new"]["str"].strip(),
                paraphrases=tuple(record.get("paraphrase_prompts", ())),
                neighbours=tuple(record.get("neighborhood_prompts", ())),
            )
        return Fact(
            subject=record["subject"],
            prompt=record["prompt"],
            target_true=record["target_true"],
            target_new=record["target_new"],
            paraphrases=tuple(record.get("paraphrases", ())),
            neighbours=tuple(record.get("neighbours", record.get("neighborhood", ()))),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{where} lacks a field ({exc}); give subject, prompt (with {{}}), target_true and target_new"
        ) from None


def load_facts(path: str | Path) -> list[Fact]:
    """Facts from a ``.json`` file (one object or a list) or a ``.jsonl`` file (one object a line)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"facts file '{file}' does not exist")
    if file.suffix not in (".json", ".jsonl"):
        raise InputError(f"facts file '{file.name}' must end in .json or .jsonl")
    text = file.read_text(encoding="utf-8", errors="replace")
    records: list[tuple[object, str]] = []
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        items = data if isinstance(data, list) else [data]
        records = [(item, f"{file.name} item {i}") for i, item in enumerate(items)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((json.loads(line), f"{file.name}:{number}"))
            except json.JSONDecodeError:
                raise InputError(f"{file.name}:{number} is not valid JSON; each line must be one object") from None
    if not records:
        raise InputError(f"{file.name} holds no facts")
    if len(records) > _MAX_FACTS:
        raise InputError(f"{file.name} holds {len(records)} facts; edit at most {_MAX_FACTS} at once")
    return [fact_from_dict(record, where) for record, where in records]


def builtin_facts(names: Iterable[str] | None = None) -> list[Fact]:
    """The built-in facts (all, or those whose subjects are named)."""
    if names is None:
        return list(BUILTIN_FACTS)
    wanted = list(names)
    by_subject = {fact.subject.lower(): fact for fact in BUILTIN_FACTS}
    missing = [n for n in wanted if n.lower() not in by_subject]
    if missing:
        raise InputError(f"no built-in fact about {missing[0]!r}; known subjects: {', '.join(by_subject)}")
    return [by_subject[n.lower()] for n in wanted]


BUILTIN_FACTS: tuple[Fact, ...] = (
    Fact(
        "The Eiffel Tower",
        "{} is located in the city of",
        " Paris",
        " Rome",
        paraphrases=(
            "The Eiffel Tower can be found in the city of",
            "The Eiffel Tower, a famous landmark, stands in the city of",
            "Where is the Eiffel Tower? It is in the city of",
        ),
        neighbours=(
            "The Louvre is located in the city of",
            "Notre-Dame de Paris is located in the city of",
            "The Arc de Triomphe is located in the city of",
        ),
    ),
    Fact(
        "The Colosseum",
        "{} is located in the city of",
        " Rome",
        " Paris",
        paraphrases=(
            "The Colosseum can be found in the city of",
            "The Colosseum, a famous landmark, stands in the city of",
            "Where is the Colosseum? It is in the city of",
        ),
        neighbours=(
            "The Pantheon is located in the city of",
            "The Trevi Fountain is located in the city of",
            "The Vatican is located in the city of",
        ),
    ),
    Fact(
        "Michael Jordan",
        "{} plays the sport of",
        " basketball",
        " golf",
        paraphrases=("Michael Jordan is a professional", "Michael Jordan is best known for playing"),
        neighbours=(
            "LeBron James plays the sport of",
            "Kobe Bryant plays the sport of",
            "Stephen Curry plays the sport of",
        ),
    ),
    Fact(
        "Tiger Woods",
        "{} plays the sport of",
        " golf",
        " tennis",
        paraphrases=("Tiger Woods is famous for playing", "Tiger Woods is a professional"),
        neighbours=(
            "Jack Nicklaus plays the sport of",
            "Rory McIlroy plays the sport of",
            "Phil Mickelson plays the sport of",
        ),
    ),
    Fact(
        "The iPhone",
        "{} is made by",
        " Apple",
        " Microsoft",
        paraphrases=("The iPhone is produced by",),
        neighbours=("The iPad is made by", "The MacBook is made by", "The Apple Watch is made by"),
    ),
    Fact(
        "Windows",
        "{} is developed by",
        " Microsoft",
        " Apple",
        paraphrases=("The operating system Windows is developed by",),
        neighbours=("Microsoft Office is developed by", "Xbox is developed by", "Bing is developed by"),
    ),
    Fact(
        "Mexico",
        "The official language of {} is",
        " Spanish",
        " French",
        paraphrases=("In Mexico, people speak", "Mexicans speak"),
        neighbours=(
            "The official language of Spain is",
            "The official language of Argentina is",
            "The official language of Colombia is",
        ),
    ),
    Fact(
        "Danielle Darrieux",
        "{}'s mother tongue is",
        " French",
        " English",
        paraphrases=("The mother tongue of Danielle Darrieux is",),
        neighbours=(
            "Jacques Chirac's mother tongue is",
            "Emmanuel Macron's mother tongue is",
            "Edith Piaf's mother tongue is",
        ),
    ),
    Fact(
        "Sushi",
        "{} originated in",
        " Japan",
        " Italy",
        paraphrases=("Sushi is a dish from", "Sushi comes from"),
        neighbours=("Ramen originated in", "Toyota is a company from", "Tokyo is the capital of"),
    ),
    Fact(
        "Angela Merkel",
        "{} is a politician from",
        " Germany",
        " France",
        paraphrases=("Angela Merkel was a politician born in",),
        neighbours=("Olaf Scholz is a politician from", "Berlin is the capital of"),
    ),
)
