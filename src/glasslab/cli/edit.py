"""Commands of knowledge editing: ``trace`` (causal tracing of a fact) and ``edit`` (ROME / MEMIT, evaluated)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out

if TYPE_CHECKING:
    from ..methods.editing import Edit, EditEvaluation, Fact

SeedOpt = Annotated[int, typer.Option(help="Random seed (noise draws, prefixes).")]


def _ints(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{flag} takes comma-separated layer numbers like 3,4,5; got '{text}'") from None
    if not values:
        raise InputError(f"--{flag} needs at least one layer")
    return values


@app.command("trace")
@friendly_errors
def trace(
    prompt: Annotated[
        str, typer.Argument(help="A prompt the model completes with a fact, e.g. 'The Eiffel Tower is in'.")
    ],
    subject: Annotated[str, typer.Option(help="The words of the prompt naming the subject (they get the noise).")],
    target: Annotated[str | None, typer.Option(help="The answer token (default: the model's top prediction).")] = None,
    kinds: Annotated[
        str, typer.Option(help="States to restore: resid, mlp, attn (comma-separated).")
    ] = "resid,mlp,attn",
    samples: Annotated[int, typer.Option(help="Noise draws averaged per cell (the paper: 10).")] = 10,
    noise: Annotated[float, typer.Option(help="Noise std in units of the subject-embedding std (the paper: 3).")] = 3.0,
    window: Annotated[
        int | None, typer.Option(help="Layers restored together for mlp/attn (default: scaled 10/48).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Restored runs per forward pass (default: auto).")] = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Causal tracing: blur the subject with noise, restore one state at a time, see where the answer comes back."""
    from ..methods.editing.tracing import causal_trace

    result = causal_trace(
        load_model(model, dtype, device),
        prompt,
        subject,
        target=target,
        kinds=[k.strip() for k in kinds.split(",") if k.strip()],
        samples=samples,
        noise=noise,
        window=window,
        batch_size=batch_size,
        seed=seed,
    )

    def show() -> None:
        for kind in result.kinds:
            layer, position, prob = result.peak(kind)
            table = Table(
                title=escape(
                    f"restoring {kind}: p({result.target!r}) (clean {result.clean_prob:.3f}, "
                    f"corrupted {result.corrupted_prob:.3f})"
                ),
                caption=escape(
                    f"peak: L{layer} at {position} {result.tokens[position]!r}, p = {prob:.3f}; * = subject"
                ),
            )
            table.add_column("layer", justify="right")
            for label in result.column_labels():
                table.add_column(escape(label), justify="right")
            for layer_index, row in zip(result.layers, result.scores[kind], strict=True):
                table.add_row(f"L{layer_index}", *(f"{v:.2f}" for v in row))
            out.print(table)

    emit(result, as_json, out_file, show)


@app.command("edit")
@friendly_errors
def edit(
    subject: Annotated[str | None, typer.Option(help="The subject to rewrite, e.g. 'The Eiffel Tower'.")] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="The relation prompt, with {} for the subject or containing it ('{} is located in')."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="The new answer, with its leading space (' Rome').")] = None,
    target_true: Annotated[
        str | None, typer.Option(help="The current answer (default: the model's top prediction).")
    ] = None,
    paraphrase: Annotated[
        list[str] | None, typer.Option(help="A paraphrase of the prompt, to measure generalisation (repeatable).")
    ] = None,
    neighbour: Annotated[
        list[str] | None,
        typer.Option(help="A prompt about another subject with the same answer, for specificity (repeatable)."),
    ] = None,
    facts: Annotated[
        str | None,
        typer.Option(help="Facts from a .json/.jsonl file, 'builtin' (all built-in facts) or 'builtin:SUBJECT,...'."),
    ] = None,
    method: Annotated[
        str, typer.Option(help="rome (one fact, one layer) or memit (many facts, many layers).")
    ] = "rome",
    layer: Annotated[int | None, typer.Option(help="ROME: the MLP layer to edit (default: traced).")] = None,
    layers: Annotated[str | None, typer.Option(help="MEMIT: comma-separated layers (default: scaled 3..8/28).")] = None,
    corpus: Annotated[str, typer.Option(help="Corpus for the key statistics: builtin, a file or hf:NAME.")] = "builtin",
    stats_tokens: Annotated[int, typer.Option(help="Tokens to measure the key statistics on (cached).")] = 50_000,
    steps: Annotated[int, typer.Option(help="Optimisation steps for the new values.")] = 20,
    fluency: Annotated[bool, typer.Option(help="Also measure fluency (generates text before and after).")] = True,
    save: Annotated[str | None, typer.Option(help="Save the edit under this name in the store (or a folder).")] = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Rewrite a fact with ROME (or many with MEMIT) and show efficacy, generalisation, specificity and fluency."""
    from ..methods.editing import evaluate_edit, memit, rome

    if method not in ("rome", "memit"):
        raise InputError(f"--method must be rome or memit, got '{method}'")
    loaded = load_model(model, dtype, device)
    if facts is not None:
        if subject or prompt or target:
            raise InputError("give either --facts or --subject/--prompt/--target, not both")
        fact_list = _facts_option(facts)
    else:
        fact_list = [_fact(loaded, subject, prompt, target, target_true, paraphrase or [], neighbour or [])]
    if method == "rome":
        if len(fact_list) != 1:
            raise InputError(f"ROME rewrites one fact but {len(fact_list)} were given; use --method memit")
        if layers is not None:
            raise InputError("--layers is for MEMIT; give ROME one --layer")
        result_edit = rome(
            loaded, fact_list[0], layer=layer, corpus=corpus, stats_tokens=stats_tokens, steps=steps, seed=seed
        )
    else:
        if layer is not None:
            raise InputError("--layer is for ROME; give MEMIT --layers a,b,c")
        result_edit = memit(
            loaded,
            fact_list,
            layers=_ints(layers, "layers"),
            corpus=corpus,
            stats_tokens=stats_tokens,
            steps=steps,
            seed=seed,
        )
    if save:
        result_edit = result_edit.save(save)
    result = evaluate_edit(loaded, result_edit, fluency=fluency)
    emit(result, as_json, out_file, lambda: _show_edit(result, result_edit, method, len(fact_list)))


def _facts_option(facts: str) -> list[Fact]:
    """The facts ``--facts`` names: all built-in ones, some by subject (``builtin:A,B``), or a file's."""
    from ..methods.editing import builtin_facts, load_facts

    if facts == "builtin":
        return builtin_facts()
    if facts.startswith("builtin:"):
        return builtin_facts([name.strip() for name in facts[len("builtin:") :].split(",")])
    return load_facts(facts)


def _show_edit(result: EditEvaluation, result_edit: Edit, method: str, n_facts: int) -> None:
    """The edit's evaluation as a table, then each fact's new probabilities and a continuation after the edit."""
    table = Table(
        title=escape(f"{method.upper()} at layers {', '.join(map(str, result_edit.layers))}: {n_facts} fact(s)"),
        caption="means over the facts; efficacy/generalisation/specificity are shares of prompts",
    )
    for column in ("measure", "before", "after"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for row in result.table():
        table.add_row(*row)
    out.print(table)
    for fact, after in zip(result.facts, result.after, strict=True):
        out.print(escape(f"{fact.describe()}: p(new) {after.p_new:.3f}, p(true) {after.p_true:.3f}"), highlight=False)
        for text in after.texts[:1]:
            out.print(escape(f"  after: {fact.text}{text}".replace("\n", " ")), highlight=False)
    if result_edit.path:
        out.print(f"saved to {escape(str(result_edit.path))}", highlight=False)


def _fact(model, subject, prompt, target, target_true, paraphrases, neighbours):
    from ..methods.editing import Fact

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
