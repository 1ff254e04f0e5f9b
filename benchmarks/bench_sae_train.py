"""SAE training throughput: glasslab's TopK trainer against SAELens's (``TopKTrainingSAE`` + ``SAETrainer``).

What is compared, exactly: both trainers get the SAME activation rows (``blocks.6.resid_post`` of the
offline default model by default, BOS left out, read once by glasslab's harvester with the forward
pass stopped after the hooked layer), the same width (8 x d_in), k, batch size and number of steps,
and input normalisation to mean squared norm d_in (SAELens: ``expected_average_only_in``). SAELens's
own ``LanguageModelSAERunner`` needs a TransformerLens ``HookedTransformer`` of the model, which cannot
be built offline for Gemma 3 270M here, so its activation store is not used. SAELens's
``use_sparse_activations=True`` fails in its backward pass on CPU with this torch ("aten::view" on
SparseCPU), so its default dense TopK is timed. The trainers run in interleaved repeats (each with
fresh weights) and are reported

- per trainer: SAE steps only (tokens/s);
- end to end: tokens trained / (harvest time of the rows they read + training time), i.e. activations
  included, with the harvest cost the same for both;

plus ``uptime`` load before and after, since the machine may be shared.

    .venv/bin/python benchmarks/bench_sae_train.py            # defaults: 8 steps of 4096 over 65k rows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GLASSLAB_PROGRESS", "0")

import torch

import glasslab as gl
from glasslab.data import load_corpus
from glasslab.dictionaries.activations import ActivationStream, ShuffleBuffer
from glasslab.dictionaries.train import TrainConfig
from glasslab.dictionaries.training import TrainingState, initialise, start_training, train_step
from glasslab.sae import SAE, SAEConfig


class _Rows:
    """An in-memory stand-in for ActivationStream (already harvested rows)."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows_tensor, self.width = rows, rows.shape[1]

    def rows(self, start: int = 0):
        yield self.rows_tensor[start:]


def glasslab_run(rows: torch.Tensor, cfg: TrainConfig) -> float:
    """Seconds for cfg.steps steps of glasslab's trainer (buffer, normalisation, AuxK, Adam, renorm)."""
    d_in = rows.shape[1]
    k = cfg.k if cfg.architecture == "topk" else None
    sae = SAE(SAEConfig(cfg.architecture, d_in, cfg.width(d_in), cfg.hook, k=k))
    optimizer = start_training(sae, cfg)
    state = TrainingState()
    buffer = ShuffleBuffer(_Rows(rows), cfg.buffer_tokens, seed=1)
    start = time.perf_counter()
    initialise(sae, cfg, state, buffer)
    while state.step < cfg.steps:
        metrics = train_step(sae, optimizer, cfg, state, buffer)
    glasslab_run.last_fve = metrics["fve"]
    return time.perf_counter() - start


def sae_lens_run(rows: torch.Tensor, cfg: TrainConfig) -> float:
    """Seconds for the same number of steps of SAELens's SAETrainer on a TopKTrainingSAE."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(cfg.seed)
    d_in = rows.shape[1]
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=cfg.width(d_in),
            k=cfg.k,
            normalize_activations="expected_average_only_in",
            device="cpu",
        )
    )
    generator = torch.Generator().manual_seed(1)

    def provider():
        while True:
            yield rows[torch.randint(rows.shape[0], (cfg.batch_size,), generator=generator)]

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=4,
    )
    start = time.perf_counter()
    SAETrainer(trainer_cfg, sae, provider()).fit()
    return time.perf_counter() - start


def load_average() -> str:
    return open("/proc/loadavg").read().split(" ", 3)[:3].__str__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hook", default="blocks.6.resid_post")
    parser.add_argument("--rows", type=int, default=65_536, help="activation rows harvested (shared)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"load_before": load_average(), "threads": args.threads}
    model = gl.load()
    stream = ActivationStream(model, args.hook, load_corpus("builtin", split="train"), max_rows=args.rows)
    start = time.perf_counter()
    rows = torch.cat(list(stream.rows()))
    harvest = time.perf_counter() - start
    cfg = TrainConfig(
        hook=args.hook,
        expansion=args.expansion,
        k=args.k,
        tokens=args.steps * args.batch_size,
        batch_size=args.batch_size,
        buffer_tokens=rows.shape[0],
    )
    contenders = {
        "glasslab": lambda: glasslab_run(rows, cfg),
        "sae_lens": lambda: sae_lens_run(rows, cfg),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            samples[name].append(fn())
    tokens = cfg.steps * cfg.batch_size
    harvest_per_token = harvest / rows.shape[0]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    report.update(
        {
            "model": model.name,
            "hook": args.hook,
            "d_sae": cfg.width(rows.shape[1]),
            "k": args.k,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "harvest_tokens_per_s": rows.shape[0] / harvest,
            "trainer_tokens_per_s": {name: tokens / t for name, t in medians.items()},
            "end_to_end_tokens_per_s": {name: tokens / (t + harvest_per_token * tokens) for name, t in medians.items()},
            "seconds": samples,
            "glasslab_last_batch_fve": glasslab_run.last_fve,
            "load_after": load_average(),
        }
    )
    report["trainer_speedup_vs_sae_lens"] = medians["sae_lens"] / medians["glasslab"]
    e2e = report["end_to_end_tokens_per_s"]
    report["end_to_end_speedup_vs_sae_lens"] = e2e["glasslab"] / e2e["sae_lens"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
