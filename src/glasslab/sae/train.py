"""Train an SAE on any hook of a model, from a corpus: TopK, JumpReLU or ReLU + L1.

Activations stream from the model (forward stopped after the hooked layer, BOS left out) through a
bounded shuffle buffer (``activations.py``). Inputs are scaled so their mean squared norm is ``d_in``
(hyper-parameters then carry across models and layers); the scale is folded into the saved weights so
the saved SAE reads raw activations and needs no normaliser. Decoder rows are kept at unit norm (the
gradient's component along each row is removed before the step, the row renormalised after).

The gradients, as each paper defines them:

- TopK (Gao et al. 2024): only k features per token are active, so the backward pass touches only
  their encoder columns and decoder rows. ``TopKEncode`` computes the dense encoder product once,
  keeps the top k, and its backward builds the encoder gradient as a sparse [d_sae, batch] x
  [batch, d_in] product (3-4x faster on CPU than autograd through a dense [batch, d_sae] matrix); the
  decoder is an ``embedding_bag`` over the active rows. Dead features (no activation for
  ``dead_after_tokens``) are revived by the AuxK loss: the top ``aux_k`` dead features reconstruct the
  main reconstruction's error, weighted by ``aux_coefficient`` (1/32 in the paper).
- JumpReLU (Rajamanoharan et al. 2024): ``f = z * H(z - theta)`` with straight-through
  pseudo-derivatives for the threshold: d f/d theta = -(theta / eps) K((z - theta) / eps) and, for the L0
  penalty sum H(z - theta), d/d theta = -(1 / eps) K((z - theta) / eps), K the rectangle kernel
  1{|u| < 1/2}; z gets the ordinary derivative H(z - theta) (and none from the L0 term).
- Standard (Bricken et al. 2023): ReLU features with an L1 penalty (decoder rows have unit norm, so
  the L1 of the features is the norm-weighted L1 of Anthropic's update).

Training is resumable (an atomic checkpoint every ``checkpoint_every`` steps and on Ctrl-C; running
the same training again continues where it stopped, with the same result as an uninterrupted run) and
the SAE is written once, atomically, at the end, in SAELens's layout with ``training.json`` beside it.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data import load_corpus
from ..errors import GlasslabError, InputError
from ..model.model import Model
from ..progress import progress_enabled
from ..store import atomic_directory, store_path
from ..views.figures import Bars, Figure
from ..views.html import figure_html
from .activations import ActivationStream, ShuffleBuffer
from .config import SAEConfig
from .files import save_sae
from .fit import hook_width
from .sae import SAE


class TopKEncode(torch.autograd.Function):
    """(x, b_dec, W_enc, b_enc, k) -> (activations [B, k], indices [B, k]) of ``topk((x - b_dec) W_enc + b_enc)``,
    ReLU'd; the gradient flows to b_dec, W_enc and b_enc at the selected features only."""

    @staticmethod
    def forward(ctx, x, b_dec, w_enc, b_enc, k: int):
        centred = x - b_dec
        pre = torch.addmm(b_enc, centred, w_enc)
        values, indices = pre.topk(k, dim=-1, sorted=False)
        active = values > 0
        ctx.save_for_backward(centred, w_enc, indices, active)
        ctx.mark_non_differentiable(indices)
        return values * active, indices

    @staticmethod
    def backward(ctx, grad_acts, _grad_indices):
        centred, w_enc, indices, active = ctx.saved_tensors
        grad = (grad_acts * active).reshape(-1)
        flat = indices.reshape(-1)
        d_sae = w_enc.shape[1]
        grad_b_enc = torch.zeros(d_sae, dtype=grad.dtype).index_add_(0, flat, grad)
        rows = torch.arange(indices.shape[0]).repeat_interleave(indices.shape[1])
        sparse = torch.sparse_coo_tensor(
            torch.stack([flat, rows]), grad, (d_sae, indices.shape[0]), check_invariants=False
        )
        grad_w_enc = torch.sparse.mm(sparse, centred).t()
        grad_b_dec = -(w_enc @ grad_b_enc)  # x - b_dec feeds every pre-activation
        return None, grad_b_dec, grad_w_enc, grad_b_enc, None


def decode_sparse(acts: torch.Tensor, indices: torch.Tensor, w_dec: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """sum_j acts[:, j] * W_dec[indices[:, j]] + b_dec without a dense [B, d_sae] matrix."""
    return F.embedding_bag(indices, w_dec, per_sample_weights=acts, mode="sum") + b_dec


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """``z * H(z - theta)``; pseudo-derivative for theta as in Rajamanoharan et al. 2024, eq. 11."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth: float):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad_out):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad_out * (z > theta)
        grad_theta = -(theta / eps) * _rectangle((z - theta) / eps) * grad_out
        return grad_z, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None


class Step(torch.autograd.Function):
    """``H(z - theta)`` (for the L0 penalty); gradient only to theta, as in Rajamanoharan et al. 2024, eq. 12."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth: float):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(1.0 / eps) * _rectangle((z - theta) / eps) * grad_out
        return None, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None


def geometric_median(points: torch.Tensor, iterations: int = 30, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to ``points`` (robust b_dec init)."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=-1).clamp_min(eps)
        updated = (weights[:, None] * points).sum(0) / weights.sum()
        if (updated - median).norm() < eps * max(1.0, float(median.norm())):
            return updated
        median = updated
    return median


# -- configuration --------------------------------------------------------------------------------
TRAINABLE = ("topk", "jumprelu", "standard")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training's result (a checkpoint resumes only with the same config)."""

    hook: str
    architecture: str = "topk"
    expansion: int = 8  # d_sae = expansion * d_in, unless d_sae is given
    d_sae: int | None = None
    k: int = 32  # topk: active features per token
    tokens: int = 2_000_000  # activation rows the SAE trains on (steps * batch_size)
    harvest_tokens: int | None = None  # rows read from the model at most (None: as many as the corpus gives)
    buffer_tokens: int = 500_000  # rows held in memory for shuffling (and reused once the corpus ends)
    batch_size: int = 4096
    lr: float = 1e-3
    warmup: float = 0.02  # fraction of steps with a linear lr warm-up
    decay: float = 0.3  # fraction of steps at the end with a linear decay to 0
    seed: int = 0
    corpus: str = "builtin"
    seq_len: int = 128
    model_batch: int = 16  # sequences per forward pass while harvesting
    head_index: int | None = None
    # A feature silent this long counts as dead and gets the AuxK loss. Short, so that training's "dead" is
    # at least as strict as a held-out reading of a few ten thousand tokens: at 200,000, 20.6% of layer 6's
    # features never fired on the default model's 33k-token test split; at 16,384, 5.2% (docs/sae.md).
    dead_after_tokens: int = 16_384
    aux_k: int = 256
    aux_coefficient: float = 1 / 32
    l1_coefficient: float = 5.0  # standard
    l0_coefficient: float = 0.5  # jumprelu
    bandwidth: float = 0.05  # jumprelu: the STE kernel's width (in normalised units)
    init_threshold: float = 0.2  # jumprelu

    def __post_init__(self) -> None:
        if self.architecture not in TRAINABLE:
            raise InputError(f"glasslab trains {', '.join(TRAINABLE)} SAEs, not '{self.architecture}'")
        checks = {
            "tokens": self.tokens,
            "batch_size": self.batch_size,
            "buffer_tokens": self.buffer_tokens,
            "expansion": self.expansion,
            "k": self.k,
            "model_batch": self.model_batch,
            "dead_after_tokens": self.dead_after_tokens,
        }
        bad = [f"{name}={value}" for name, value in checks.items() if value < 1]
        if bad or not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"SAE training settings must be positive: {', '.join(bad) or f'lr={self.lr}'}")
        if self.tokens < self.batch_size:
            raise InputError(f"tokens ({self.tokens}) must be at least one batch ({self.batch_size})")
        if not (0 <= self.warmup < 1 and 0 <= self.decay <= 1 and self.warmup + self.decay <= 1):
            raise InputError("warmup and decay are fractions of the steps that add up to at most 1")

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def width(self, d_in: int) -> int:
        return self.d_sae or self.expansion * d_in

    def lr_at(self, step: int) -> float:
        """Linear warm-up, constant, then linear decay to 0 (a function of the step only, so resumable)."""
        steps = self.steps
        warm = max(1, round(self.warmup * steps))
        if step < warm:
            return self.lr * (step + 1) / warm
        start = steps - round(self.decay * steps)
        if step >= start:
            return self.lr * (steps - step) / max(1, steps - start)
        return self.lr


# -- the trainable parameters and one step ----------------------------------------------------------
class _Params(torch.nn.Module):
    def __init__(self, cfg: TrainConfig, d_in: int, d_sae: int, generator: torch.Generator) -> None:
        super().__init__()
        w_dec = torch.randn(d_sae, d_in, generator=generator)
        w_dec /= w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w_dec)
        self.W_enc = torch.nn.Parameter(w_dec.t().clone())  # Gao et al.: the encoder starts as the transpose
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        if cfg.architecture == "jumprelu":
            self.log_threshold = torch.nn.Parameter(torch.full((d_sae,), math.log(cfg.init_threshold)))


@dataclass
class _StepOut:
    loss: torch.Tensor
    mse: float
    fve: float
    l0: float
    fired: torch.Tensor  # [d_sae] activations > 0 in this batch


def _step(cfg: TrainConfig, p: _Params, x: torch.Tensor, dead: torch.Tensor) -> _StepOut:
    """Loss of one normalised batch (squared error summed over d_in, averaged over tokens)."""
    if cfg.architecture == "topk":
        acts, indices = TopKEncode.apply(x, p.b_dec, p.W_enc, p.b_enc, min(cfg.k, p.b_enc.shape[0]))
        recon = decode_sparse(acts, indices, p.W_dec, p.b_dec)
        fired = torch.bincount(indices[acts > 0], minlength=p.b_enc.shape[0])
        l0 = float((acts > 0).sum()) / x.shape[0]
        error = x - recon
        loss = error.pow(2).sum(-1).mean()
        loss = loss + _aux_loss(cfg, p, x, error.detach(), dead)
    else:
        pre = torch.addmm(p.b_enc, x - p.b_dec, p.W_enc)
        if cfg.architecture == "jumprelu":
            theta = p.log_threshold.exp()
            feats = JumpReLU.apply(pre, theta, cfg.bandwidth)
            penalty = cfg.l0_coefficient * Step.apply(pre, theta, cfg.bandwidth).sum(-1).mean()
        else:
            feats = torch.relu(pre)
            penalty = cfg.l1_coefficient * feats.sum(-1).mean()
        error = x - (feats @ p.W_dec + p.b_dec)
        loss = error.pow(2).sum(-1).mean() + penalty
        active = feats.detach() > 0
        fired, l0 = active.sum(0), float(active.sum()) / x.shape[0]
    sq = float(error.detach().pow(2).sum())
    var = float((x - x.mean(0)).pow(2).sum())
    return _StepOut(loss, sq / x.shape[0], 1 - sq / max(var, 1e-12), l0, fired)


def _aux_loss(cfg: TrainConfig, p: _Params, x: torch.Tensor, error: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """AuxK (Gao et al. 2024): the top ``aux_k`` dead features model the main reconstruction's error.

    Unnormalised, like the main loss, and scaled down while few features are dead. The paper's version
    (normalised by ||e||^2, ~30x stronger here once FVE passes 0.95) was measured worse on the default
    model's layer 6: 19% of features dead by step 696 against 6% with this one (docs/sae.md).
    """
    dead_ids = dead.nonzero().reshape(-1)
    if dead_ids.numel() == 0 or cfg.aux_coefficient == 0:
        return torch.zeros(())
    pre = torch.addmm(p.b_enc[dead_ids], x - p.b_dec, p.W_enc[:, dead_ids])
    values, local = pre.topk(min(cfg.aux_k, dead_ids.numel()), dim=-1, sorted=False)
    recon = F.embedding_bag(dead_ids[local], p.W_dec, per_sample_weights=torch.relu(values), mode="sum")
    scale = min(dead_ids.numel() / cfg.aux_k, 1.0)
    return cfg.aux_coefficient * scale * (recon - error).pow(2).sum(-1).mean()


@torch.no_grad()
def _unit_decoder_grad(p: _Params) -> None:
    """Remove the gradient's component along each decoder row (the row's norm is fixed at 1).

    Under ``no_grad``: with autograd on, the in-place edit would give the gradient a graph holding the
    previous step's decoder, and each step's graph the one before (memory grew ~25 MB per step)."""
    grad = p.W_dec.grad
    if grad is not None:
        grad -= (grad * p.W_dec).sum(-1, keepdim=True) * p.W_dec


@torch.no_grad()
def _renormalise(p: _Params) -> None:
    p.W_dec /= p.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# -- state kept between steps (and in checkpoints) ------------------------------------------------
@dataclass
class _State:
    step: int = 0
    scale: float = 1.0  # multiply raw activations by this: mean squared norm becomes d_in
    seconds: float = 0.0  # wall-clock training time so far (harvest included), summed over resumed sessions
    cpu_seconds: float = 0.0  # this process's CPU time over the same spans (load-independent)
    history: list[dict[str, float]] = field(default_factory=list)
    since_fired: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    fire_counts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


class _Clock:
    """Adds wall-clock and CPU time to the state at each lap (checkpoints include them)."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.state.seconds += wall - self.wall
        self.state.cpu_seconds += cpu - self.cpu
        self.wall, self.cpu = wall, cpu


class TrainingCancelled(GlasslabError):
    """Ctrl-C (or a callback) stopped training; a checkpoint was written and no SAE was saved."""


@dataclass(frozen=True)
class TrainedSAE:
    """A finished training: where the SAE is, how it was trained and how good it is on held-out text."""

    path: Path
    model: str
    config: TrainConfig
    training: dict[str, Any]
    evaluation: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "sae_training",
            "model": self.model,
            "path": str(self.path),
            **self.training,
            "evaluation": self.evaluation,
        }

    def load(self) -> SAE:
        from .files import load_sae_folder

        return load_sae_folder(self.path)

    def figure(self) -> Figure:
        """The held-out evaluation's figure, or the training curve when training was not evaluated."""
        if self.evaluation:
            from .evaluate import SAEEvaluation

            return SAEEvaluation.from_dict(self.evaluation).figure()
        history = self.training["history"]
        return Figure(
            title=f"SAE training at {self.config.hook}",
            panels=[
                Bars(
                    "Fraction of variance explained on training batches",
                    [f"{row['tokens']:,} tokens" for row in history],
                    [row["fve"] for row in history],
                    "fraction",
                )
            ],
            what_you_see="How well the SAE rebuilt its training batches as training went on.",
            how_to_read="Each bar is one training batch; 1 means a perfect rebuild.",
            caveat="Training batches, not held-out text: run `glasslab sae eval` for held-out figures.",
        )

    def _repr_html_(self) -> str:
        return figure_html(self.figure())


# -- the training loop ------------------------------------------------------------------------------
def default_name(cfg: TrainConfig, d_in: int) -> str:
    """e.g. ``blocks.6.resid_post-topk-5120-k32``: hook, architecture, width (and k)."""
    k = f"-k{cfg.k}" if cfg.architecture == "topk" else ""
    head = f"-head{cfg.head_index}" if cfg.head_index is not None else ""
    return f"{cfg.hook}{head}-{cfg.architecture}-{cfg.width(d_in)}{k}"


def checkpoint_folder(model: Model, name: str) -> Path:
    return store_path("sae-checkpoints", model.key, name)


def train_sae(
    model: Model,
    config: TrainConfig,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    documents: Iterable[str] | None = None,
    evaluate_tokens: int = 32768,
    evaluate_loss_tokens: int = 2048,
    checkpoint_every: int = 100,
    fresh: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    command: str | None = None,
) -> TrainedSAE:
    """Train an SAE on ``config.hook`` of ``model`` and save it (SAELens layout) to the store or ``out``.

    ``documents`` overrides the corpus text (tests); ``on_step(step, metrics)`` is called after each step
    (raise KeyboardInterrupt in it to cancel). An existing checkpoint of the same name and config is
    resumed unless ``fresh``. After training, the SAE is evaluated on ``evaluate_tokens`` held-out tokens
    of the corpus's test split (``evaluate_loss_tokens`` for the losses; 0 skips it) and the metrics are
    written beside it in ``training.json``.
    """
    d_in = hook_width(model, config.hook, config.head_index)
    d_sae = config.width(d_in)
    if config.architecture == "topk" and config.k > d_sae:
        raise InputError(f"k={config.k} is more than the SAE's {d_sae} features; lower k or widen the SAE")
    name = name or default_name(config, d_in)
    if "/" in name or name.startswith("."):
        raise InputError(f"SAE name '{name}' must be a plain name (no '/', not starting with '.')")
    final = Path(out).expanduser() if out else store_path("saes", model.key, name)
    ckpt = checkpoint_folder(model, name)
    if fresh and ckpt.exists():
        shutil.rmtree(ckpt)
    corpus_docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    stream = ActivationStream(
        model, config.hook, corpus_docs, config.seq_len, config.model_batch, config.head_index, config.harvest_tokens
    )
    buffer = ShuffleBuffer(stream, config.buffer_tokens, seed=config.seed + 1)
    params = _Params(config, d_in, d_sae, torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.Adam(params.parameters(), lr=config.lr)
    state = _State()
    clock = _Clock(state)
    if ckpt.exists():
        _restore(ckpt, config, params, optimizer, state, buffer)
    else:
        _initialise(config, params, state, buffer, d_sae)
    bar = tqdm(
        total=config.steps,
        initial=state.step,
        desc=f"training SAE on {config.hook}",
        unit="step",
        disable=not progress_enabled(),
        file=sys.stderr,
    )
    last_saved = state.step
    try:
        while state.step < config.steps:
            metrics = _train_step(config, params, optimizer, state, buffer)
            bar.update(1)
            if state.step % 5 == 0 or state.step == config.steps:
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3g}",
                    fve=f"{metrics['fve']:.3f}",
                    l0=f"{metrics['l0']:.1f}",
                    dead=f"{metrics['dead']:.1%}",
                    read=buffer.read,
                )
            if on_step is not None:
                on_step(state.step, metrics)
            if checkpoint_every and state.step % checkpoint_every == 0 and state.step < config.steps:
                clock.lap()
                _save_checkpoint(ckpt, config, params, optimizer, state, buffer)
                last_saved = state.step
    except KeyboardInterrupt:
        bar.close()
        clock.lap()
        if state.step > last_saved:
            _save_checkpoint(ckpt, config, params, optimizer, state, buffer)
        raise TrainingCancelled(
            f"training stopped at step {state.step}/{config.steps}; checkpoint kept in '{ckpt}': "
            "run the same command again to resume (no SAE was saved)"
        ) from None
    bar.close()
    clock.lap()
    sae = to_sae(config, params, state.scale, model_name=model.name, d_in=d_in)
    evaluation = None
    if evaluate_tokens:
        from .evaluate import evaluate_sae

        evaluation = evaluate_sae(
            model,
            sae,
            corpus=config.corpus,
            tokens=evaluate_tokens,
            loss_tokens=evaluate_loss_tokens,
            seq_len=config.seq_len,
        ).to_dict()
    training = _training_record(config, state, buffer, d_in, d_sae, name, command)
    record = {**training, "evaluation": evaluation}
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    save_sae(
        sae,
        final,
        extra_files={"training.json": (json.dumps(record, indent=2) + "\n").encode()},
        sparsity=torch.log10(density.clamp_min(1e-10)).float(),
    )
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainedSAE(final, model.name, config, training, evaluation)


def _initialise(config: TrainConfig, params: _Params, state: _State, buffer: ShuffleBuffer, d_sae: int) -> None:
    """Scale from the first rows (mean squared norm -> d_in); b_dec at their geometric median."""
    sample = buffer.peek(min(config.batch_size * 4, config.buffer_tokens))
    mean_sq = float(sample.pow(2).sum(-1).mean())
    if not mean_sq > 0:
        raise InputError(f"the activations at '{config.hook}' are all zero; an SAE cannot be trained there")
    state.scale = math.sqrt(sample.shape[1] / mean_sq)
    with torch.no_grad():
        params.b_dec.copy_(geometric_median(sample[:8192] * state.scale))
    state.since_fired = torch.zeros(d_sae, dtype=torch.long)
    state.fire_counts = torch.zeros(d_sae, dtype=torch.long)


def _train_step(
    config: TrainConfig, params: _Params, optimizer: torch.optim.Optimizer, state: _State, buffer: ShuffleBuffer
) -> dict[str, float]:
    x = buffer.next_batch(config.batch_size) * state.scale
    for group in optimizer.param_groups:
        group["lr"] = config.lr_at(state.step)
    dead = state.since_fired >= config.dead_after_tokens
    out = _step(config, params, x, dead)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    _unit_decoder_grad(params)
    optimizer.step()
    _renormalise(params)
    fired = out.fired > 0
    state.since_fired += x.shape[0]
    state.since_fired[fired] = 0
    state.fire_counts += out.fired.long()
    state.step += 1
    metrics = {
        "step": state.step,
        "tokens": state.step * config.batch_size,
        "loss": float(out.loss.detach()),
        "mse": out.mse,
        "fve": out.fve,
        "l0": out.l0,
        "dead": float(dead.float().mean()),
    }
    if not math.isfinite(metrics["loss"]):
        raise InputError(f"the SAE's loss became {metrics['loss']} at step {state.step}; lower the learning rate")
    log_every = max(1, config.steps // 50)
    if state.step % log_every == 0 or state.step == config.steps:
        state.history.append(metrics)
    return metrics


def to_sae(config: TrainConfig, params: _Params, scale: float, *, model_name: str | None, d_in: int) -> SAE:
    """The trained SAE reading raw activations: the input scale c is folded into the weights.

    Trained on c x: pre = (c x - b_dec) W_enc + b_enc = c [(x - b_dec / c) W_enc + b_enc / c], and the
    reconstruction c x ~ f W_dec + b_dec. With b_enc, b_dec (and thresholds) divided by c the new
    pre-activations are pre / c, so the same features are chosen (TopK) or pass (ReLU, JumpReLU) with
    activations f / c, and (f / c) W_dec + b_dec / c reconstructs x. Decoder rows keep unit norm.
    """
    cfg = SAEConfig(
        architecture=config.architecture,
        d_in=d_in,
        d_sae=params.b_enc.shape[0],
        hook=config.hook,
        model_name=model_name,
        k=config.k if config.architecture == "topk" else None,
        hook_head_index=config.head_index,
        context_size=config.seq_len,
        prepend_bos=True,
        dataset_path=config.corpus,
    )
    sae = SAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(params.W_enc)
        sae.W_dec.copy_(params.W_dec)
        sae.b_enc.copy_(params.b_enc / scale)
        sae.b_dec.copy_(params.b_dec / scale)
        if config.architecture == "jumprelu":
            sae.threshold.copy_(params.log_threshold.exp() / scale)
    return sae


def _training_record(
    config: TrainConfig, state: _State, buffer: ShuffleBuffer, d_in: int, d_sae: int, name: str, command: str | None
) -> dict[str, Any]:
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    return {
        "name": name,
        "command": command,
        "config": asdict(config),
        "d_in": d_in,
        "d_sae": d_sae,
        "steps": state.step,
        "tokens_trained": state.step * config.batch_size,
        "tokens_harvested": buffer.read,
        "epochs_over_pool": buffer.epochs,
        "input_scale": state.scale,
        "seconds": round(state.seconds, 1),
        "cpu_seconds": round(state.cpu_seconds, 1),
        "final": state.history[-1] if state.history else None,
        "dead_fraction_training": float((state.since_fired >= config.dead_after_tokens).float().mean()),
        "never_fired_fraction_training": float((density == 0).float().mean()),
        "history": state.history,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


# -- checkpoints ------------------------------------------------------------------------------------
_TENSORS = "state.safetensors"
_STATE = "state.json"


def _save_checkpoint(
    folder: Path,
    config: TrainConfig,
    params: _Params,
    optimizer: torch.optim.Optimizer,
    state: _State,
    buffer: ShuffleBuffer,
) -> None:
    """Parameters, Adam moments, feature counters and the buffer's position, written atomically."""
    pool = buffer.state()
    tensors = {f"param.{n}": p.detach().clone() for n, p in params.named_parameters()}
    adam_steps = {}
    for n, p in params.named_parameters():
        moments = optimizer.state.get(p, {})
        if moments:
            tensors[f"adam.{n}.exp_avg"] = moments["exp_avg"]
            tensors[f"adam.{n}.exp_avg_sq"] = moments["exp_avg_sq"]
            adam_steps[n] = float(moments["step"])
    tensors["since_fired"] = state.since_fired
    tensors["fire_counts"] = state.fire_counts
    tensors["buffer.order"] = pool.pop("order")
    tensors["buffer.generator"] = pool.pop("generator")
    record = {
        "config": asdict(config),
        "step": state.step,
        "scale": state.scale,
        "seconds": state.seconds,
        "cpu_seconds": state.cpu_seconds,
        "history": state.history,
        "adam_steps": adam_steps,
        "buffer": pool,
    }
    with atomic_directory(folder) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / _TENSORS)
        (tmp / _STATE).write_text(json.dumps(record) + "\n", encoding="utf-8")


def _restore(
    folder: Path,
    config: TrainConfig,
    params: _Params,
    optimizer: torch.optim.Optimizer,
    state: _State,
    buffer: ShuffleBuffer,
) -> None:
    try:
        record = json.loads((folder / _STATE).read_text(encoding="utf-8"))
        tensors = load_file(folder / _TENSORS)
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise InputError(
            f"the checkpoint in '{folder}' is unreadable ({exc.__class__.__name__}); "
            "delete it or pass fresh=True (--fresh)"
        ) from None
    if record.get("config") != json.loads(json.dumps(asdict(config))):
        raise InputError(
            f"a checkpoint with other settings exists in '{folder}'; pass fresh=True (--fresh) to discard it, "
            "or another name"
        )
    with torch.no_grad():
        for n, p in params.named_parameters():
            p.copy_(tensors[f"param.{n}"])
    for n, p in params.named_parameters():
        if n in record["adam_steps"]:
            optimizer.state[p] = {
                "step": torch.tensor(record["adam_steps"][n]),
                "exp_avg": tensors[f"adam.{n}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"adam.{n}.exp_avg_sq"].clone(),
            }
    state.step, state.scale = int(record["step"]), float(record["scale"])
    state.seconds, state.cpu_seconds = float(record["seconds"]), float(record["cpu_seconds"])
    state.history = list(record["history"])
    state.since_fired, state.fire_counts = tensors["since_fired"].clone(), tensors["fire_counts"].clone()
    buffer.restore({**record["buffer"], "order": tensors["buffer.order"], "generator": tensors["buffer.generator"]})
