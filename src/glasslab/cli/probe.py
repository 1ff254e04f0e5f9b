"""Commands of probing: probe (linear probes at every layer, control tasks, optional steering vector) and erase
(LEACE concept erasure, judged by probes and the model's loss; declared in ``glasslab.operations.probing``:
here only how its result reads)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from ..methods.probing.erasure import Erasure
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, err, friendly_errors, load_model, out
from .derived import declare_command

DatasetArg = Annotated[
    str,
    typer.Argument(
        help="A built-in dataset (number, city, sentiment) or a .csv/.jsonl file with text and label columns "
        "(optional: position = last / a token index / a word; group = the word type)."
    ),
]
ProbeKindOpt = Annotated[str, typer.Option("--probe", help="logistic or ridge.")]
StrengthOpt = Annotated[float, typer.Option(help="L2 penalty of the probe (on standardised activations).")]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Cross-validation folds.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the folds and the control task.")]
BatchOpt = Annotated[int, typer.Option(help="Examples per forward pass.")]


def parse_layers(text: str | None, n_layers: int) -> list[int] | None:
    """'0,4,8', '2-10', '2-10,15' or 'all' -> layer numbers (None: all)."""
    if text is None or text.strip() in ("", "all"):
        return None
    layers: list[int] = []
    for piece in text.split(","):
        low, dash, high = piece.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise InputError(f"--layers takes numbers and ranges like 0,4,8 or 2-10; got '{text}'")
        layers += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    bad = [layer for layer in layers if layer >= n_layers]
    if bad:
        raise InputError(f"layer {bad[0]} is out of range; the model has layers 0..{n_layers - 1}")
    return sorted(set(layers))


@app.command("probe")
@friendly_errors
def probe_command(
    dataset: DatasetArg,
    hook: Annotated[
        list[str] | None,
        typer.Option(
            help="A block site probed at every layer (resid_post, mlp.post, attn.z...) or hook names "
            "/ wildcards (repeatable). Default: resid_post."
        ),
    ] = None,
    layers: Annotated[str | None, typer.Option(help="Only these layers, e.g. 0,4,8 or 2-10.")] = None,
    probe: ProbeKindOpt = "logistic",
    strength: StrengthOpt = 1.0,
    n_folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 32,
    save_vector: Annotated[
        str | None,
        typer.Option(help="Save the probe's direction at --vector-layer as a steering vector (name or folder)."),
    ] = None,
    vector_layer: Annotated[int | None, typer.Option(help="Layer whose resid_post probe becomes the vector.")] = None,
    positive: Annotated[
        str | None, typer.Option(help="The class the vector points to (default: the dataset's).")
    ] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Train linear probes for a labelled dataset at every layer, with control tasks and selectivity."""
    from ..methods.probing import harvest, load_probe_dataset, probe_hooks, probe_vector
    from ..methods.probing import probe as run_probe

    if (save_vector is None) != (vector_layer is None):
        raise InputError("give --save-vector NAME and --vector-layer L together")
    data = load_probe_dataset(dataset)
    loaded = load_model(model, dtype, device)
    hooks = probe_hooks(loaded, hook or "resid_post", parse_layers(layers, loaded.n_layers))
    wanted = list(hooks)
    if vector_layer is not None:
        if not 0 <= vector_layer < loaded.n_layers:
            raise InputError(f"--vector-layer must be in 0..{loaded.n_layers - 1}, got {vector_layer}")
        wanted.append(f"blocks.{vector_layer}.resid_post")
    acts = harvest(loaded, data, [h for h in loaded.hooks() if h in set(wanted)], batch_size=batch_size)
    result = run_probe(
        loaded, data, hook=hooks, probe=probe, strength=strength, n_folds=n_folds, seed=seed, activations=acts
    )
    if save_vector is not None:
        vector = probe_vector(
            loaded, data, layer=vector_layer, positive=positive, probe=probe, strength=strength, activations=acts
        ).save(save_vector)
        err.print(
            f"saved the probe direction at {vector.hook} to {escape(str(vector.path))}; use it with: glasslab steer "
            f"PROMPT --vector {escape(save_vector)}",
            highlight=False,
        )

    def show() -> None:
        table = Table(
            title=escape(f"{result.probe} probes for '{result.dataset}' ({' / '.join(result.classes)})"),
            caption=escape(
                f"{result.examples} examples, {result.word_types} word types, {result.n_folds} {result.folds} folds; "
                f"majority baseline {result.majority:.3f}, chance {result.chance:.3f}"
            ),
        )
        held_out = "held-out words" if result.folds == "grouped" else "accuracy"
        for column in ("hook", held_out, "seen words", "control", "selectivity"):
            table.add_column(column, justify="left" if column == "hook" else "right")
        for layer in result.layers:
            table.add_row(
                layer.hook,
                f"{layer.accuracy:.3f} ± {layer.accuracy_std:.3f}",
                f"{layer.seen_accuracy:.3f}",
                f"{layer.control_accuracy:.3f}",
                f"{layer.selectivity:+.3f}",
            )
        out.print(table)

    emit(result, as_json, out_file, show)


def show_erasure(result: Erasure) -> None:
    table = Table(
        title=escape(f"LEACE erasure of '{result.dataset}' at {result.hook} (rank {result.rank})"),
        caption=escape(
            f"{result.n_folds}-fold held-out accuracy; majority baseline {result.majority:.3f}; "
            f"cross-covariance {result.cross_covariance_before:.3g} -> {result.cross_covariance_after:.2g}; "
            f"mean squared edit {result.mean_squared_edit:.3g} of total variance {result.mean_squared_norm:.3g}"
        ),
    )
    table.add_column("where")
    table.add_column("accuracy before", justify="right")
    table.add_column("accuracy after", justify="right")
    table.add_row(
        result.hook,
        f"{result.accuracy_before:.3f} ± {result.accuracy_before_std:.3f}",
        f"{result.accuracy_after:.3f} ± {result.accuracy_after_std:.3f}",
    )
    for score in result.downstream:
        table.add_row(
            f"{score.hook} (erased in the run)", f"{score.accuracy_clean:.3f}", f"{score.accuracy_erased:.3f}"
        )
    out.print(table)
    if result.loss_before is not None:
        out.print(
            f"mean loss on {result.neutral_texts} neutral texts: {result.loss_before:.4f} -> "
            f"{result.loss_after:.4f} nats (positions erased: {result.positions})",
            highlight=False,
        )


declare_command(OPERATIONS["erase"], show_erasure)
