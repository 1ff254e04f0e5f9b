"""``glasslab sae train`` and ``glasslab sae eval``: train an SAE on any hook, measure any SAE (``sae eval`` is
declared in ``glasslab.operations.features``: here only how its result reads)."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.features.evaluate import SAEEvaluation
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, emit, friendly_errors, load_model, out
from .derived import declare_command
from .sae import sae_app

CorpusOpt = Annotated[
    str, typer.Option(help="builtin (offline text), a .txt/.jsonl file or folder, or hf:NAME. Its train split.")
]
EvalTokensOpt = Annotated[int, typer.Option(help="Held-out tokens for L0, variance explained, dead/dense features.")]
EvalLossTokensOpt = Annotated[int, typer.Option(help="Held-out tokens for the loss-recovered figures (4 full passes).")]


@sae_app.command("train")
@friendly_errors
def sae_train(
    hook: Annotated[str, typer.Option(help="The hook to read, e.g. blocks.6.resid_post.")],
    corpus: CorpusOpt = "builtin",
    architecture: Annotated[str, typer.Option(help="topk, jumprelu or standard (ReLU + L1).")] = "topk",
    expansion: Annotated[int, typer.Option(help="Features per input dimension (d_sae = expansion x d_in).")] = 8,
    k: Annotated[int, typer.Option(help="TopK: active features per token.")] = 32,
    tokens: Annotated[int, typer.Option(help="Activations the SAE trains on (steps x batch size).")] = 2_000_000,
    harvest_tokens: Annotated[
        int | None, typer.Option(help="Read at most this many tokens through the model (default: the corpus).")
    ] = None,
    buffer_tokens: Annotated[int, typer.Option(help="Activations held in memory for shuffling and reuse.")] = 500_000,
    batch_size: Annotated[int, typer.Option(help="Activations per training step.")] = 4096,
    lr: Annotated[float, typer.Option(help="Adam learning rate (after warm-up, before the final decay).")] = 1e-3,
    l1: Annotated[float, typer.Option(help="standard: L1 coefficient.")] = 5.0,
    l0: Annotated[float, typer.Option(help="jumprelu: L0 coefficient.")] = 0.5,
    dead_after: Annotated[
        int, typer.Option(help="topk: a feature silent for this many training tokens is dead and gets the AuxK loss.")
    ] = 16_384,
    seed: Annotated[int, typer.Option(help="Random seed (initialisation and shuffling).")] = 0,
    seq_len: Annotated[int, typer.Option(help="Tokens per packed sequence.")] = 128,
    name: Annotated[str | None, typer.Option(help="Name in the store (default: hook-architecture-width).")] = None,
    save_to: Annotated[str | None, typer.Option(help="Save into this folder instead of the store.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard a checkpoint of this name and start over.")] = False,
    eval_tokens: EvalTokensOpt = 32768,
    eval_loss_tokens: EvalLossTokensOpt = 2048,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Train an SAE on a hook from a corpus (resumable: Ctrl-C keeps a checkpoint), then evaluate it."""
    from ..dictionaries.train import TrainConfig
    from ..methods.features.training import train_sae

    config = TrainConfig(
        hook=hook,
        architecture=architecture,
        expansion=expansion,
        k=k,
        tokens=tokens,
        harvest_tokens=harvest_tokens,
        buffer_tokens=buffer_tokens,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        corpus=corpus,
        seq_len=seq_len,
        l1_coefficient=l1,
        l0_coefficient=l0,
        dead_after_tokens=dead_after,
    )
    loaded = load_model(model, dtype, device)
    loaded.hook_spec(hook)  # a wrong hook fails before anything is read
    result = train_sae(
        loaded,
        config,
        name=name,
        out=save_to,
        fresh=fresh,
        evaluate_tokens=eval_tokens,
        evaluate_loss_tokens=eval_loss_tokens,
        command=shlex.join(["glasslab", *sys.argv[1:]]),
    )

    def show() -> None:
        facts = result.training
        out.print(
            f"trained {escape(facts['name'])}: {facts['d_sae']} features, {facts['tokens_trained']:,} tokens "
            f"({facts['tokens_harvested']:,} read from the model) in {facts['seconds']:.0f} s",
            highlight=False,
        )
        out.print(f"saved to {escape(str(result.path))}", highlight=False)
        if result.evaluation:
            _show_evaluation(SAEEvaluation.from_dict(result.evaluation))

    emit(result, as_json, out_file, show)


def _show_evaluation(result: SAEEvaluation) -> None:
    table = Table(title=escape(f"SAE at {result.hook} ({result.architecture}, {result.d_sae} features)"))
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("L0 (active features per token)", f"{result.l0:.1f}"),
        ("fraction of variance explained", f"{result.fve:.4f}"),
        ("loss recovered vs mean ablation", f"{result.loss_recovered_mean:.4f}"),
        ("loss recovered vs zero ablation", f"{result.loss_recovered_zero:.4f}"),
        ("loss: clean / spliced", f"{result.loss_clean:.4f} / {result.loss_spliced:.4f}"),
        ("loss: mean / zero ablation", f"{result.loss_mean:.4f} / {result.loss_zero:.4f}"),
        ("dead features (never active)", f"{result.dead_fraction:.2%}"),
        ("dense features (active > 10%)", f"{result.dense_fraction:.2%}"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    table.caption = escape(
        f"{result.tokens:,} held-out tokens ({result.loss_tokens:,} for the losses), {result.corpus}"
    )
    out.print(table)


declare_command(OPERATIONS["sae-eval"], _show_evaluation, on=sae_app, cli_name="eval")
