"""Tuned lens (Belrose et al. 2023, arXiv:2303.08112): a learned affine translator per layer, then the logit lens.

The paper trains each translator ``A_l h + b_l`` by SGD on KL(model output || lens). On a CPU that objective
is slow (one unembedding of a 262144-token vocabulary per token per layer), so glasslab fits the translators
in closed form first:

    T_l(h) = W_l n(h) + b_l,   n(h) = h / rms(h)

by ridge regression from layer l's RMS-normalised residual stream to the last layer's RMS-normalised residual
(the final norm's input up to its scale, which the final norm ignores). The regression's sufficient statistics
(X^T X, X^T Y) are summed over streamed corpus batches, which is what makes training resumable: the running
sums and the number of sequences seen are the checkpoint. The sums are one job's (``tuned_lens_sums``), run in
this process or, with ``cluster=``, on Ray workers. Optionally (``kl_steps > 0``) the fitted translators
are then refined with Adam on the paper's KL objective. A lens records which objective produced it.

Rows: the lens has a translator for the embeddings (``blocks.0.resid_pre``, layer -1) and for layers
0..n_layers-2; the last layer's translator is the identity, so there both lenses equal the model's output.
Position 0 (BOS) is left out of fitting and of KL evaluation: its residual is an outlier attention sink.

Store layout (``glasslab.store.TUNED_LENS``: ``tuned-lens/<key>/``, key = model name + layer count + a hash of the
config): ``lens/`` (``lens.safetensors`` + ``lens.json``), ``checkpoint/`` (running sums) and ``kl-checkpoint/``,
each written atomically with the store's ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...cluster import ClusterSpec, cluster_spec
from ...data import batches, load_corpus, packed_sequences
from ...errors import InputError
from ...model.model import Model
from ...progress import progress
from ...store import TUNED_LENS, save, verify
from ..metrics import kl_divergence
from .logit_lens import CHUNK
from .tuned_lens_artifact import (  # also re-exported: defined here before the lens got its own module
    FORMAT,
    TunedLens,
    _hooks,
    _normalise,
    lens_folder,
    load_tuned_lens,  # noqa: F401
)
from .tuned_lens_kl import LensKL, lens_kl  # noqa: F401  (re-exported, as above)
from .tuned_lens_sums import LensSumJob, LensSums, add_units, lens_units, load_sums, save_sums, unit_sequences

_KL_WEIGHTS, _KL_STATE = "kl.safetensors", "kl.json"


def train_tuned_lens(
    model: Model,
    corpus: str = "builtin",
    *,
    tokens: int = 200_000,
    seq_len: int = 128,
    batch_size: int = 8,
    ridge: float = 1e-3,
    kl_steps: int = 0,
    kl_lr: float = 1e-3,
    resume: bool = True,
    checkpoint_every: int = 10,
    folder: str | Path | None = None,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
) -> TunedLens:
    """Fit a tuned lens on ``tokens`` tokens of ``corpus``'s train split and save it to the store.

    Least squares in closed form (resumable: the running sums are checkpointed every ``checkpoint_every``
    batches, and a re-run, or one asking for more ``tokens``, continues from them; ``resume=False`` starts
    over). ``ridge`` is relative to the features' mean square, so it is unit-free. ``cluster`` (``local``,
    ``auto`` or an address, with ``workers``) sums on Ray workers, checkpointed after whole units of
    batches. ``kl_steps > 0`` then refines by Adam on KL(output || lens), the paper's objective, in this
    process: each step unembeds every layer of a batch, minutes per step on a CPU, seconds on a GPU.
    Returns the saved lens.
    """
    for name, value, low in (
        ("tokens", tokens, 1),
        ("seq_len", seq_len, 2),
        ("batch_size", batch_size, 1),
        ("checkpoint_every", checkpoint_every, 1),
    ):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if kl_steps < 0 or ridge < 0 or kl_lr <= 0:
        raise InputError("kl_steps and ridge must be >= 0 and kl_lr > 0")
    spec = cluster_spec(cluster, workers)
    source = load_corpus(corpus, split="train")
    root = Path(folder).expanduser() if folder is not None else lens_folder(model)
    n_sequences = math.ceil(tokens / (seq_len - 1))
    fingerprint = {"key": model.key, "corpus": source.describe(), "seq_len": seq_len, "format": FORMAT}

    sums = (load_sums(model, root / "checkpoint", fingerprint) if resume else None) or LensSums.empty(model)
    if sums.sequences > n_sequences:
        raise InputError(
            f"the checkpoint in {root} already holds {sums.tokens:,} tokens, more than the {tokens:,} asked; ask "
            "for at least that many, or start over (--fresh / resume=False)"
        )
    units = lens_units(model, source, seq_len, sums.sequences, n_sequences, unit_sequences(spec, batch_size))
    add_units(
        LensSumJob(tuple(_hooks(model)), batch_size),
        units,
        sums,
        model=model,
        spec=spec,
        batches_left=math.ceil((n_sequences - sums.sequences) / batch_size),
        checkpoint_every=checkpoint_every,
        checkpoint=lambda running: save_sums(root / "checkpoint", fingerprint, running),
    )
    if sums.tokens == 0:
        raise InputError(f"corpus {source.describe()} gave no sequence of {seq_len} tokens; use a larger corpus")

    seen = sums.tokens
    weight, bias = _solve(sums.gram, sums.cross, ridge)
    lens = TunedLens(model.name, model.key, weight, bias, seen, source.describe(), seq_len, ridge, 0)
    if kl_steps:
        weight, bias = _refine(
            model, lens, source, seq_len, batch_size, kl_steps, kl_lr, root / "kl-checkpoint", resume
        )
        lens = TunedLens(model.name, lens.key, weight, bias, seen, lens.corpus, seq_len, ridge, kl_steps)
    saved = lens.save(root / "lens")
    return dataclasses.replace(lens, path=saved)


def _solve(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge solution per layer; the bias column is not penalised. Returns float32 weight and bias."""
    d = cross.shape[-1]
    weights, biases = [], []
    for g, c in zip(gram, cross, strict=True):
        penalty = torch.zeros_like(g)
        penalty[:d, :d] = torch.eye(d, dtype=g.dtype) * ridge * float(torch.diagonal(g)[:d].mean())
        solution = torch.linalg.solve(g + penalty, c)
        weights.append(solution[:d])
        biases.append(solution[d])
    weight = torch.cat([torch.stack(weights), torch.eye(d, dtype=torch.float64)[None]])
    bias = torch.cat([torch.stack(biases), torch.zeros(1, d, dtype=torch.float64)])
    return weight.float(), bias.float()  # the last row (identity) is never applied; it keeps rows = layers


def _refine(
    model: Model,
    lens: TunedLens,
    source,
    seq_len: int,
    batch_size: int,
    steps: int,
    lr: float,
    folder: Path,
    resume: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on mean KL(output || lens) over the non-final layers, one corpus batch per step, checkpointed each step.

    The checkpoint (translators, Adam moments, steps done) belongs to the least-squares lens it started from;
    a re-run with the same settings continues it.
    """
    n, d = model.n_layers, model.d_model
    start = {
        "key": lens.key,
        "tokens": lens.tokens,
        "ridge": lens.ridge,
        "seq_len": seq_len,
        "lr": lr,
        "batch_size": batch_size,
        "corpus": lens.corpus,
    }
    param = torch.nn.Parameter(torch.cat([lens.weight[:n], lens.bias[:n, None]], dim=1).clone())
    optimizer = torch.optim.Adam([param], lr=lr)
    done = _resume_refinement(folder, start, param, optimizer, steps) if resume else 0
    hooks = _hooks(model)
    stream = batches(packed_sequences(model, source, seq_len), batch_size)
    for batch in progress(
        itertools.islice(stream, done, steps), total=steps - done, description="tuned lens: KL refinement", unit="step"
    ):
        run = model.run(batch, cache=hooks, logits=False)
        final = run.cache[hooks[-1]][:, 1:].reshape(-1, d)
        count = final.shape[0]
        optimizer.zero_grad()
        for start_row in range(0, count, CHUNK):
            rows = slice(start_row, start_row + CHUNK)
            with torch.no_grad():
                reference = torch.log_softmax(model.unembed(final[rows]).float(), dim=-1)
            for i, name in enumerate(hooks[:-1]):
                h = _normalise(run.cache[name][:, 1:].reshape(-1, d)[rows].float().clone())
                translated = h @ param[i, :d] + param[i, d]
                log_probs = torch.log_softmax(model.unembed(translated.to(model.dtype)).float(), dim=-1)
                (kl_divergence(reference, log_probs).sum() / count).backward()
        optimizer.step()
        done += 1
        _save_refinement(folder, lens.key, start, param, optimizer, done)
    if done < steps:
        raise InputError(f"the corpus ran out after {done} KL steps; ask for fewer --kl-steps")
    refined = param.detach()
    weight = torch.cat([refined[:, :d], torch.eye(d)[None]])
    bias = torch.cat([refined[:, d], torch.zeros(1, d)])
    return weight, bias


def _resume_refinement(
    folder: Path, start: dict, param: torch.nn.Parameter, optimizer: torch.optim.Adam, steps: int
) -> int:
    """Load the KL-refinement checkpoint into ``param`` and ``optimizer`` if it continues the same run (same
    ``start`` settings, no more steps than asked); returns the steps already done (0 when starting afresh)."""
    if not (folder / _KL_STATE).exists():
        return 0
    try:
        verify(folder, TUNED_LENS)
        state = json.loads((folder / _KL_STATE).read_text(encoding="utf-8"))
        saved = load_file(str(folder / _KL_WEIGHTS))
    except (OSError, ValueError, SafetensorError):
        raise InputError(
            f"the KL-refinement checkpoint in {folder} is unreadable; delete it, or start over (--fresh)"
        ) from None
    if {k: state.get(k) for k in start} != start or state.get("steps", 0) > steps:
        return 0
    with torch.no_grad():
        param.copy_(saved["param"])
    optimizer.state[param] = {
        "step": torch.tensor(float(state["steps"])),
        "exp_avg": saved["exp_avg"],
        "exp_avg_sq": saved["exp_avg_sq"],
    }
    return int(state["steps"])


def _save_refinement(
    folder: Path, key: str, start: dict, param: torch.nn.Parameter, optimizer: torch.optim.Adam, done: int
) -> None:
    """Checkpoint the translators and Adam's moments after ``done`` steps, atomically."""
    moments = optimizer.state[param]
    with save(TUNED_LENS, key, folder, summary={"steps": done}) as tmp:
        save_file(
            {
                "param": param.detach().contiguous(),
                "exp_avg": moments["exp_avg"].contiguous(),
                "exp_avg_sq": moments["exp_avg_sq"].contiguous(),
            },
            str(tmp / _KL_WEIGHTS),
        )
        (tmp / _KL_STATE).write_text(json.dumps({**start, "steps": done}), encoding="utf-8")
