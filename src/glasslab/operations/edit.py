"""Knowledge editing: causal tracing of a fact (``trace``), and rewriting facts with ROME or MEMIT, evaluated
before and after (``edit``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from ..errors import InputError
from ..methods.editing import (
    Edit,
    EditEvaluation,
    Fact,
    builtin_facts,
    evaluate_edit,
    key_statistics,
    load_facts,
    memit,
    rome,
)
from ..methods.editing.memit import default_layers
from ..methods.editing.tracing import CausalTrace, causal_trace, traced_layer
from ..model.model import Model
from .options import MAX_BATCH, MAX_LIST, MAX_REFERENCE, MAX_SEEDS, Cli, Index, Options, Prompt, PromptOptions, Token
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec

Seed = Annotated[int, Field(ge=0, le=MAX_SEEDS, description="Random seed (noise draws, prefixes).")]


def _layer_numbers(text: str, flag: str) -> list[int]:
    """'3,4,5' -> [3, 4, 5], as --layers has always been written."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{flag} takes comma-separated layer numbers like 3,4,5; got '{text}'") from None
    if not values:
        raise InputError(f"--{flag} needs at least one layer")
    return values


def _kinds(text: str, flag: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class TraceOptions(PromptOptions):
    subject: Annotated[
        Prompt,
        Field(description="The words of the prompt naming the subject (they get the noise)."),
        Cli(("--subject",)),
    ]
    target: Annotated[Token | None, Field(description="The answer token (default: the model's top prediction).")] = None
    kinds: Annotated[
        list[Literal["resid", "mlp", "attn"]],
        Field(min_length=1, max_length=3, description="States to restore: resid, mlp, attn (default: all three)."),
        Cli(parse=_kinds, whole=True),
    ] = ["resid", "mlp", "attn"]  # noqa: RUF012 (pydantic copies defaults; the same as KINDS)
    samples: Annotated[int, Field(ge=1, le=1000, description="Noise draws averaged per cell (the paper: 10).")] = 10
    noise: Annotated[
        float, Field(ge=0.0, le=100.0, description="Noise std in units of the subject-embedding std (the paper: 3).")
    ] = 3.0
    window: Annotated[
        int | None, Field(ge=1, le=1000, description="Layers restored together for mlp/attn (default: scaled 10/48).")
    ] = None
    batch_size: Annotated[
        int | None, Field(ge=1, le=MAX_BATCH, description="Restored runs per forward pass (default: auto).")
    ] = None
    seed: Seed = 0


class EditOptions(Options):
    subject: Annotated[Prompt | None, Field(description="The subject to rewrite, e.g. 'The Eiffel Tower'.")] = None
    prompt: Annotated[
        Prompt | None,
        Field(description="The relation prompt, with {} for the subject or containing it ('{} is located in')."),
        Cli(("--prompt",)),
    ] = None
    target: Annotated[Token | None, Field(description="The new answer, with its leading space (' Rome').")] = None
    target_true: Annotated[
        Token | None, Field(description="The current answer (default: the model's top prediction).")
    ] = None
    paraphrases: Annotated[
        list[Prompt] | None,
        Field(max_length=MAX_REFERENCE, description="A paraphrase of the prompt, to measure generalisation."),
        Cli(("--paraphrase",)),
    ] = None
    neighbours: Annotated[
        list[Prompt] | None,
        Field(
            max_length=MAX_REFERENCE,
            description="A prompt about another subject with the same answer, for specificity.",
        ),
        Cli(("--neighbour",)),
    ] = None
    facts: Annotated[
        str | None,
        Field(
            max_length=1000,
            description="Facts from a .json/.jsonl file, 'builtin' (all built-in facts) or 'builtin:SUBJECT,...'.",
        ),
    ] = None
    method: Annotated[
        Literal["rome", "memit"], Field(description="rome (one fact, one layer) or memit (many facts, many layers).")
    ] = "rome"
    layer: Annotated[Index | None, Field(description="ROME: the MLP layer to edit (default: traced).")] = None
    layers: Annotated[
        list[Index] | None,
        Field(min_length=1, max_length=MAX_LIST, description="MEMIT: the layers (3,4,5; default: scaled 3..8/28)."),
        Cli(parse=_layer_numbers, whole=True),
    ] = None
    corpus: Annotated[
        str, Field(max_length=1000, description="Corpus for the key statistics: builtin, a file or hf:NAME.")
    ] = "builtin"
    stats_tokens: Annotated[
        int, Field(ge=1, le=100_000_000, description="Tokens to measure the key statistics on (cached).")
    ] = 50_000
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0
    steps: Annotated[int, Field(ge=1, le=10_000, description="Optimisation steps for the new values.")] = 20
    fluency: Annotated[bool, Field(description="Also measure fluency (generates text before and after).")] = True
    save: Annotated[
        str | None, Field(max_length=1000, description="Save the edit under this name in the store (or a folder).")
    ] = None
    seed: Seed = 0


def edit_facts(
    model: Model,
    *,
    subject: str | None = None,
    prompt: str | None = None,
    target: str | None = None,
    target_true: str | None = None,
    paraphrases: Sequence[str] | None = None,
    neighbours: Sequence[str] | None = None,
    facts: str | None = None,
    method: Literal["rome", "memit"] = "rome",
    layer: int | None = None,
    layers: Sequence[int] | None = None,
    corpus: str = "builtin",
    stats_tokens: int = 50_000,
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    steps: int = 20,
    fluency: bool = True,
    save: str | None = None,
    seed: int = 0,
) -> EditEvaluation:
    """One fact (``subject``, ``prompt``, ``target``) or ``facts`` rewritten by ROME or MEMIT, saved under
    ``save`` when given, and evaluated before and after (the model ends unchanged). ``cluster`` measures
    the key statistics (when not cached) on Ray workers."""
    if facts is not None:
        if subject or prompt or target:
            raise InputError("give either --facts or --subject/--prompt/--target, not both")
        fact_list = _named_facts(facts)
    else:
        fact_list = [_fact(model, subject, prompt, target, target_true, paraphrases or [], neighbours or [])]
    stats = dict(corpus=corpus, stats_tokens=stats_tokens, steps=steps, seed=seed)
    scale = dict(corpus=corpus, tokens=stats_tokens, cluster=cluster, workers=workers, worker_gpus=worker_gpus)
    if method == "rome":
        if len(fact_list) != 1:
            raise InputError(f"ROME rewrites one fact but {len(fact_list)} were given; use --method memit")
        if layers is not None:
            raise InputError("--layers is for MEMIT; give ROME one --layer")
        if cluster is not None:  # measured on Ray here, where rome() would measure them in this process
            layer = traced_layer(model, fact_list[0], seed=seed) if layer is None else layer
            stats["stats"] = key_statistics(model, layer, **scale)[layer]
        made: Edit = rome(model, fact_list[0], layer=layer, **stats)
    else:
        if layer is not None:
            raise InputError("--layer is for ROME; give MEMIT --layers a,b,c")
        if cluster is not None:
            chosen = default_layers(model.n_layers) if layers is None else layers
            stats["stats"] = key_statistics(model, chosen, **scale)
        made = memit(model, fact_list, layers=layers, **stats)
    if save:
        made = made.save(save)
    return evaluate_edit(model, made, fluency=fluency)


def _named_facts(facts: str) -> list[Fact]:
    """The facts ``facts`` names: all built-in ones, some by subject (``builtin:A,B``), or a file's."""
    if facts == "builtin":
        return builtin_facts()
    if facts.startswith("builtin:"):
        return builtin_facts([name.strip() for name in facts[len("builtin:") :].split(",")])
    return load_facts(facts)


def _fact(
    model: Model,
    subject: str | None,
    prompt: str | None,
    target: str | None,
    target_true: str | None,
    paraphrases: Sequence[str],
    neighbours: Sequence[str],
) -> Fact:
    if not subject or not prompt or not target:
        raise InputError("give --subject, --prompt and --target (or --facts FILE)")
    if "{}" not in prompt:
        if subject not in prompt:
            raise InputError(f"the prompt must contain the subject {subject!r} or a {{}} where it goes")
        prompt = prompt.replace(subject, "{}", 1)
    if target_true is None:
        run = model.run(prompt.format(subject))
        target_true = model.tokenizer.decode([int(run.last_logits()[0].argmax())])
        if not target_true.strip():
            raise InputError(f"the model's top prediction {target_true!r} is blank; give the answer with --target-true")
    return Fact(subject, prompt, target_true, target, tuple(paraphrases), tuple(neighbours))


GROUP = "editing"
OPERATIONS = [
    OperationSpec(
        "trace",
        TraceOptions,
        causal_trace,
        CausalTrace,
        "Causal tracing: blur the subject with noise, restore one state at a time, see where the answer comes back.",
        GROUP,
        python_only=frozenset({"noise_std", "layers"}),
        long=True,
    ),
    OperationSpec(
        "edit",
        EditOptions,
        edit_facts,
        EditEvaluation,
        "Rewrite a fact with ROME (or many with MEMIT) and show efficacy, generalisation, specificity and fluency.",
        GROUP,
        local_only=frozenset({"facts", "corpus", "save", "cluster", "workers", "worker_gpus"}),
        long=True,
        # It rewrites the served model's weights while it measures (other requests would read the edited
        # model) and reads facts and corpora from files here: the CLI and Python run it, the server does not.
        http=False,
    ),
]
