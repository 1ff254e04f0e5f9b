"""What ``methods.intervene.ablation`` ablates and how: the components (heads, attention and MLP blocks, neurons),
the mean activations for ``how="mean"``, and the batched engine in which row ``i`` of a forward pass carries
ablation plan ``i`` (see ``methods.intervene.ablation``'s docstring for the sites and the batching).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ...cluster import ClusterSpec, cluster_spec
from ...data import Corpus, load_corpus
from ...errors import InputError
from ...interventions import Replace
from ...model.model import Model
from ...progress import progress
from ..corpus_sums import PartialSums, SequenceUnit, SumJob, plan_units, sum_units
from ..metrics import Metric, make_metric

How = Literal["zero", "mean", "resample"]
HOWS = ("zero", "mean", "resample")
_SITES = {"head": "attn.z", "attn": "attn_out", "mlp": "mlp_out", "neuron": "mlp.post"}


@dataclass(frozen=True)
class Component:
    """One thing to ablate: a head, a layer's attention or MLP block, or a neuron."""

    kind: Literal["head", "attn", "mlp", "neuron"]
    layer: int
    index: int | None = None  # head or neuron

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.{_SITES[self.kind]}"

    @property
    def label(self) -> str:
        if self.kind == "head":
            return f"L{self.layer}.H{self.index}"
        if self.kind == "neuron":
            return f"L{self.layer}.N{self.index}"
        return f"L{self.layer} {self.kind}"


def components(
    model: Model,
    *,
    heads: Sequence[tuple[int, int]] = (),
    attn_layers: Sequence[int] = (),
    mlp_layers: Sequence[int] = (),
    neurons: Sequence[tuple[int, int]] = (),
) -> list[Component]:
    """Checked components from (layer, head), layer and (layer, neuron) indices."""
    chosen = [Component("head", int(layer), int(head)) for layer, head in heads]
    chosen += [Component("attn", int(layer)) for layer in attn_layers]
    chosen += [Component("mlp", int(layer)) for layer in mlp_layers]
    chosen += [Component("neuron", int(layer), int(neuron)) for layer, neuron in neurons]
    if not chosen:
        raise InputError("nothing to ablate; name at least one head, attention layer, MLP layer or neuron")
    for c in chosen:
        if not 0 <= c.layer < model.n_layers:
            raise InputError(f"{c.label}: layer {c.layer} is out of range (valid: 0..{model.n_layers - 1})")
        size = {"head": model.n_heads, "neuron": model.d_mlp}.get(c.kind)
        if size is not None and not 0 <= c.index < size:
            raise InputError(f"{c.label}: {c.kind} {c.index} is out of range (valid: 0..{size - 1})")
    return chosen


# ---------------------------------------------------------------------------------------------------
# Mean activations, computed once per hook and reusable


@dataclass(frozen=True)
class MeanActivations:
    """Each hook's mean activation (feature shape, e.g. [head, d_head] for ``attn.z``) over ``tokens``
    tokens of ``source``, BOS positions excluded. Pass it to ``ablate``/``ablation_sweep`` as ``means``."""

    values: dict[str, torch.Tensor]
    source: str
    tokens: int

    def require(self, hooks: Sequence[str]) -> None:
        missing = [h for h in hooks if h not in self.values]
        if missing:
            raise InputError(
                f"the means do not cover '{missing[0]}'; compute them with mean_activations(model, [...]) "
                "for every hook you ablate"
            )


def mean_activations(
    model: Model,
    hooks: Sequence[str],
    *,
    corpus: str | Corpus | None = None,
    prompts: Sequence[str] | None = None,
    sequences: int = 64,
    seq_len: int = 64,
    batch_size: int = 16,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> MeanActivations:
    """Mean of each hook's activation over a corpus (``sequences`` packed sequences of ``seq_len``
    tokens, streamed in batches) or over reference ``prompts``, excluding each sequence's BOS position.

    One pass computes every hook's mean and stops after the last layer any of them needs. ``cluster``
    (``local``, ``auto`` or an address) averages a corpus on Ray workers (``workers``, each with
    ``worker_gpus`` GPUs), with the same result; reference prompts, one forward pass, always run here.
    """
    if (corpus is None) == (prompts is None):
        raise InputError("give either a corpus or reference prompts to average over, not both or neither")
    spec = cluster_spec(cluster, workers, worker_gpus)
    names = model.expand_hooks(list(hooks))
    layers = [model.hook_spec(n).layer for n in names]
    if any(layer is None for layer in layers):
        raise InputError("mean ablation works on block hooks (blocks.L....), not embed/ln_final/logits")
    job = MeanJob(tuple(names), max(layers) + 1, 1 if model.tokenizer.bos_token_id is not None else 0, batch_size)
    if prompts is not None:
        tokens = model.tokenize(list(prompts))
        total = job.sums(model, tokens.input_ids, tokens.attention_mask)
        source = _count(len(tokens.input_ids), "reference prompt")
    else:
        if sequences < 1:
            raise InputError(f"sequences must be at least 1, got {sequences}")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        text = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
        units = plan_units(model, text, seq_len, sequences, batch_size)
        total = sum_units(job, units, model=model, spec=spec, description="mean activations", sequences=sequences)
        source = f"corpus {text.describe()}"
    if total.count == 0:
        raise InputError("no tokens to average over (besides BOS); give longer reference prompts or more text")
    values = {
        name: (sum_ / total.count).to(device=model.device, dtype=model.dtype) for name, sum_ in total.sums.items()
    }
    return MeanActivations(values, f"{source}, {total.count} tokens", total.count)


@dataclass(frozen=True)
class MeanJob(SumJob):
    """Each hook's activation summed over a unit's tokens, the first ``skip`` (BOS) of each sequence left out;
    the model runs up to layer ``stop``."""

    hooks: tuple[str, ...]
    stop: int
    skip: int
    batch_size: int

    def run(self, model: Model | None, unit: SequenceUnit) -> PartialSums:
        assert model is not None
        total = PartialSums({}, 0)
        for batch in unit.tokens.split(self.batch_size):
            total += self.sums(model, batch, None)
        return total

    def sums(self, model: Model, tokens: torch.Tensor, mask: torch.Tensor | None) -> PartialSums:
        """The float64 sums (on the CPU) over one forward pass's tokens that ``mask`` keeps (None: all)."""
        run = model.run(tokens, cache=list(self.hooks), stop_at_layer=self.stop, attention_mask=mask)
        weights = run.attention_mask[:, self.skip :].to(torch.float64)
        sums = {}
        for name in self.hooks:
            act = run.cache[name][:, self.skip :].to(torch.float64)
            w = weights.to(act.device).view(*weights.shape, *([1] * (act.dim() - 2)))
            sums[name] = (act * w).sum(dim=(0, 1)).cpu()
        return PartialSums(sums, int(weights.sum()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------------------------------
# The batched engine: row i of a forward pass carries ablation plan i


@dataclass(frozen=True)
class _Source:
    """What ablated cells become, shared by every row of a call."""

    how: str
    positions: torch.Tensor | None  # [pos] bool, None = every position
    means: dict[str, torch.Tensor] | None
    resampled: dict[str, torch.Tensor] | None  # hook -> [samples, pos, ...], the drawn reference prompts
    samples: int


def _ablate_rows(act: torch.Tensor, *, hook: str, select: torch.Tensor, source: _Source) -> torch.Tensor:
    """``act`` with each row's selected features (heads, neurons, or the whole vector) ablated."""
    mask = select.to(act.device)[:, None, :]
    if source.positions is not None:
        mask = mask & source.positions.to(act.device)[None, :, None]
    if act.dim() == 4:
        mask = mask[..., None]
    if source.how == "zero":
        value = torch.zeros((), dtype=act.dtype, device=act.device)
    elif source.how == "mean":
        value = source.means[hook].to(device=act.device, dtype=act.dtype)
    else:
        rows = torch.arange(act.shape[0]) % source.samples
        value = source.resampled[hook][rows].to(device=act.device, dtype=act.dtype)
    return torch.where(mask, value, act)


def _interventions(model: Model, plans: Sequence[Sequence[Component]], source: _Source) -> list[Replace]:
    """One Replace per hook; batch row r = plan r // samples, resample draw r % samples."""
    cells: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    n_rows = len(plans) * source.samples
    for p, plan in enumerate(plans):
        for c in plan:
            for s in range(source.samples):
                cells[c.hook].append((p * source.samples + s, c.index))
    out = []
    for hook, chosen in cells.items():
        width = {"attn.z": model.n_heads, "mlp.post": model.d_mlp}.get(hook.split(".", 2)[2], 1)
        select = torch.zeros(n_rows, width, dtype=torch.bool)
        for row, index in chosen:
            select[row, 0 if index is None else index] = True
        out.append(Replace(hook, fn=functools.partial(_ablate_rows, hook=hook, select=select, source=source)))
    return out


def _ablated_values(
    model: Model, tokens: torch.Tensor, metric: Metric, plans: Sequence[Sequence[Component]], source: _Source, rows: int
) -> torch.Tensor:
    """[len(plans)] metric after each plan's ablation (mean over resample draws), ``rows`` per forward."""
    per_pass = max(1, rows // source.samples)
    chunks = range(0, len(plans), per_pass)
    values = []
    for start in progress(chunks, total=len(chunks), description="ablating", unit="pass"):
        group = plans[start : start + per_pass]
        batch = tokens.expand(len(group) * source.samples, -1)
        run = model.run(batch, cache=["ln_final"], logits=False, interventions=_interventions(model, group, source))
        values.append(metric(model, run).view(len(group), source.samples).mean(1))
    return torch.cat(values)


def _prepare(
    model: Model,
    prompt: str,
    hooks: Sequence[str],
    *,
    how: str,
    metric: str | None,
    target: str | None,
    versus: str | None,
    position: int,
    ablate_positions: Sequence[int] | None,
    reference: Sequence[str] | None,
    corpus: str | None,
    means: MeanActivations | None,
    seed: int,
    samples: int,
    cluster: str | None = None,
    workers: int | None = None,
) -> tuple[torch.Tensor, Metric, float, _Source, str | None]:
    """Tokens, metric, clean value, the ablation source and a description of what it averages over."""
    if how not in HOWS:
        raise InputError(f"unknown ablation '{how}'; use zero, mean or resample")
    if samples < 1:
        raise InputError(f"samples must be at least 1, got {samples}")
    if how == "zero" and (reference or corpus or means):
        raise InputError("zero ablation takes no reference prompts, corpus or means; use how='mean' or 'resample'")
    if how == "resample" and not reference:
        raise InputError("resample ablation needs reference prompts to draw activations from")
    if sum(x is not None and x != [] for x in (reference, corpus, means)) > 1:
        raise InputError("give one source of ablation values: reference prompts, a corpus or precomputed means")
    if how == "resample" and (corpus or means):
        raise InputError("resample ablation draws from reference prompts; a corpus or means is for how='mean'")
    if cluster is not None and (how != "mean" or reference or means is not None):
        raise InputError("a cluster runs mean ablation's pass over a corpus; the other ablations run here")
    tokens = model.to_tokens(prompt)
    n_pos = tokens.shape[1]
    chosen_metric = make_metric(model, metric, target=target, versus=versus, position=position)
    clean_run = model.run(tokens, cache=["ln_final"], logits=False)
    if chosen_metric.kind == "kl":
        chosen_metric = chosen_metric.with_reference(model, clean_run)
    clean = float(chosen_metric(model, clean_run)[0])

    positions = None
    if ablate_positions is not None:
        positions = torch.zeros(n_pos, dtype=torch.bool)
        for p in ablate_positions:
            if not -n_pos <= p < n_pos:
                raise InputError(f"ablation position {p} is out of range for a prompt of {n_pos} tokens")
            positions[p] = True

    described, mean_values, resampled = None, None, None
    if how == "mean":
        if means is None:
            means = mean_activations(
                model,
                hooks,
                prompts=reference,
                corpus=None if reference else (corpus or "builtin"),
                cluster=cluster,
                workers=workers,
            )
        means.require(hooks)
        mean_values, described = means.values, means.source
    elif how == "resample":
        ref = model.tokenize(list(reference))
        shortest = int(ref.attention_mask.sum(1).min())
        if shortest < n_pos:
            raise InputError(
                f"a reference prompt has {shortest} tokens but the prompt has {n_pos}; resampling copies "
                "activations position by position, so give reference prompts at least as long"
            )
        stop = max(model.hook_spec(h).layer for h in hooks) + 1
        ref_run = model.run(ref.input_ids, cache=list(hooks), stop_at_layer=stop, attention_mask=ref.attention_mask)
        draws = torch.randint(len(reference), (samples,), generator=torch.Generator().manual_seed(seed))
        resampled = {h: ref_run.cache[h][draws.to(ref_run.cache[h].device), :n_pos] for h in hooks}
        described = f"{_count(len(reference), 'reference prompt')}, seed {seed}, {_count(samples, 'draw')}"
    source = _Source(how, positions, mean_values, resampled, samples if how == "resample" else 1)
    return tokens, chosen_metric, clean, source, described
