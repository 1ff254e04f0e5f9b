"""The ``attribute`` command: which prompt tokens made the model predict a token, by one or several methods."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out


@app.command("attribute")
@friendly_errors
def attribute_command(
    prompt: Annotated[str, typer.Argument(help="The text whose next-token prediction is explained.")],
    target: Annotated[
        str | None, typer.Option(help="The predicted token to explain (e.g. ' Paris'; default: the top prediction).")
    ] = None,
    versus: Annotated[str | None, typer.Option(help="Explain logit(target) - logit(versus) instead.")] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="logit, logprob, prob or logit_diff (default: logit_diff with --versus, else logit)."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="Comma-separated: saliency, gradient_x_input (gxi), integrated_gradients (ig), shap, occlusion, "
            "attention_rollout (rollout), attention_flow (flow), gradient_attention, or all "
            "(default: ig, or all with --compare).",
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option(help="Rank the methods by faithfulness (deletion/insertion); implied by several methods.")
    ] = False,
    baseline: Annotated[str, typer.Option(help="A removed token becomes: pad, eos, zero, mean or token:TEXT.")] = "pad",
    steps: Annotated[int, typer.Option(help="Integrated gradients: points on the path.")] = 64,
    rule: Annotated[
        str, typer.Option(help="Integrated gradients: gauss_legendre, riemann_middle or riemann_trapezoid.")
    ] = "gauss_legendre",
    budget: Annotated[int, typer.Option(help="SHAP: model evaluations (exact when 2^tokens fits).")] = 128,
    seed: Annotated[int, typer.Option(help="SHAP orders and the random reference orders.")] = 0,
    window: Annotated[int, typer.Option(help="Occlusion: tokens removed together.")] = 1,
    batch_size: Annotated[int | None, typer.Option(help="Inputs per forward pass (default: auto).")] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Input attribution: a score per prompt token for the prediction, by one method or several side by side."""
    from ..methods.input_attribution import attribute, compare_attributions
    from ..methods.input_attribution.registry import method_names

    names = method_names(method or ("all" if compare else "integrated_gradients"))
    options = dict(
        target=target,
        versus=versus,
        kind=kind,
        baseline=baseline,
        steps=steps,
        rule=rule,
        budget=budget,
        seed=seed,
        window=window,
        batch_size=batch_size,
    )
    loaded = load_model(model, dtype, device)
    if len(names) == 1 and not compare:
        result = attribute(loaded, prompt, names[0], **options)
        emit(result, as_json, out_file, lambda: _show_one(result))
    else:
        comparison = compare_attributions(loaded, prompt, names, **options)
        emit(comparison, as_json, out_file, lambda: _show_comparison(comparison))


def _caption(target: dict, full: float, base: float, baseline: str) -> str:
    return f"{target['description']}: f(prompt) = {full:.4g}, f(baseline '{baseline}') = {base:.4g}"


def _show_one(result) -> None:
    table = Table(
        title=escape(f"{result.label} · {result.model}"),
        caption=escape(_caption(result.target, result.full_value, result.baseline_value, result.baseline)),
    )
    for column in ("pos", "token", "score"):
        table.add_column(column, justify="left" if column == "token" else "right")
    errors = result.stderr or [None] * len(result.scores)
    for position, token, score, error in zip(
        result.positions, result.attributed_tokens, result.scores, errors, strict=True
    ):
        table.add_row(
            str(position), escape(repr(token)), f"{score:+.4g}" + ("" if error is None else f" ± {error:.2g}")
        )
    out.print(table)
    if result.completeness_error is not None:
        out.print(f"completeness error |sum - (f(prompt) - f(baseline))| = {result.completeness_error:.3g}")
    out.print(f"{result.evaluations} model evaluations, {result.seconds:.2f} s", highlight=False)


def _show_comparison(result) -> None:
    from ..methods.input_attribution import METHODS

    table = Table(
        title=escape(f"input attribution · {result.model} · most faithful first"),
        caption=escape(_caption(result.target, result.full_value, result.baseline_value, result.baseline)),
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("pos", justify="right")
    table.add_column("token")
    for ranked in result.methods:
        table.add_column(escape(f"{ranked.rank}.{METHODS[ranked.attribution.method].short}"), justify="right")
    for i, position in enumerate(result.positions):
        scores = [f"{m.attribution.scores[i]:.2g}" for m in result.methods]
        table.add_row(str(position), escape(repr(result.tokens[position])), *scores)
    table.add_section()
    measures = (
        ("faithful", "score"),
        ("ins AUC", "insertion_auc"),
        ("del AUC", "deletion_auc"),
        ("compreh", "comprehensiveness"),
        ("suffic", "sufficiency"),
    )
    for label, field in measures:
        table.add_row("", label, *[f"{getattr(m.faithfulness, field):.2g}" for m in result.methods])
    out.print(table)
    out.print(
        "faithful = insertion AUC - deletion AUC (higher is better); compreh/suffic: ERASER comprehensiveness "
        "(higher is better) and sufficiency (lower is better), in the target's units",
        highlight=False,
    )
    random = result.random
    out.print(
        f"random order ({result.random_orders} seeded): faithfulness {random.score:+.3g}, insertion AUC "
        f"{random.insertion_auc:+.3g}, deletion AUC {random.deletion_auc:+.3g}. "
        f"{result.forward_rows} model rows, {result.seconds:.1f} s",
        highlight=False,
    )
