"""Commands of probing: probe (linear probes at every layer, control tasks, optional steering vector) and erase
(LEACE concept erasure, judged by probes and the model's loss). Both are declared in
``glasslab.operations.probing``: here only how their results read."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.probing.erasure import Erasure
from ..methods.probing.result import Probing
from ..operations import OPERATIONS
from ..operations.probing import saved_vector_note
from .app import out
from .derived import declare_command


def show_probing(result: Probing) -> None:
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


declare_command(OPERATIONS["probe"], show_probing, note=saved_vector_note)


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
