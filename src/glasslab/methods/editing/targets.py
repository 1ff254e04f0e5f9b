"""What ROME and MEMIT share: context prefixes, edit keys, and the optimised new values.

- Prefixes (ROME/MEMIT's "context templates"): short texts the model writes itself from a few starter
  words (seeded sampling), put in front of the edit prompt so the key and value do not depend on the
  prompt starting the text. The plain prompt is always the first row.
- Keys: the MLP key (``blocks.L.mlp.post``) at the subject's last token, averaged over the prefixed prompts.
- Values: a vector ``delta`` added at one site at the subject's last token of every prefixed prompt, found by
  Adam so that ``target_new`` becomes likely. The loss is ROME's: the new target's mean negative
  log-likelihood, plus ``kl_factor`` x KL(before || now) of the prediction at the subject's last token of
  "{subject} is a" (keeps what the subject *is*), plus ``weight_decay`` x (||delta|| / ||v||)^2 where ``v``
  is the site's value in the plain prompt; ||delta|| is clamped to ``clamp`` x ||v||. Facts are optimised
  together in one batch, each with its own delta, and each stops when its loss is below 0.05: their
  losses add, and Adam is element-wise, so this equals optimising them one by one.

Sites: ``"proj"`` is the output of the MLP output projection of layer L (ROME's v, before any post-norm);
``"resid"`` is ``blocks.L.resid_post`` (MEMIT's z).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ...errors import InputError
from ...interventions.values import Replace
from ...model.model import Model
from ...model.session import local_hooks
from ...progress import progress
from .facts import Fact
from .prompts import decode, subject_span, target_log_probs, teacher_forced

Site = Literal["proj", "resid"]
STARTERS = ("The", "Therefore", "Because", "I", "You")
_STOP_LOSS = 0.05


def context_prefixes(model: Model, count: int = 5, length: int = 10, seed: int = 0) -> list[str]:
    """``""`` plus ``count`` texts of about ``length`` tokens sampled from the model, each ending in ". "."""
    if count < 0 or length < 1:
        raise InputError("the prefix count must be >= 0 and their length >= 1 token")
    prefixes = [""]
    for i in range(count):
        starter = STARTERS[i % len(STARTERS)]
        text = model.generate(starter, max_new_tokens=length, temperature=1.0, top_p=0.9, seed=seed + i).completion
        text = " ".join((starter + text).replace("{", " ").replace("}", " ").split())
        prefixes.append(text + ". ")
    return prefixes


def edit_rows(fact: Fact, prefixes: Sequence[str]) -> list[tuple[str, int]]:
    """(prompt, character offset where the prompt proper starts) for each prefix."""
    return [(prefix + fact.text, len(prefix)) for prefix in prefixes]


def last_subject_positions(model: Model, fact: Fact, rows: Sequence[tuple[str, int]]) -> list[int]:
    return [subject_span(model, text, fact.subject, after)[1] - 1 for text, after in rows]


def edit_keys(model: Model, facts: Sequence[Fact], layer: int, prefixes: Sequence[str]) -> torch.Tensor:
    """[facts, d_mlp] float64: each fact's key at ``layer``, averaged over its prefixed prompts."""
    texts, positions = [], []
    for fact in facts:
        rows = edit_rows(fact, prefixes)
        texts += [text for text, _ in rows]
        positions += last_subject_positions(model, fact, rows)
    hook = f"blocks.{layer}.mlp.post"
    run = model.run(texts, cache=[hook], stop_at_layer=layer + 1)
    keys = run.cache[hook][torch.arange(len(texts)), torch.tensor(positions)].double().cpu()
    return keys.reshape(len(facts), len(prefixes), -1).mean(1)


def site_values(model: Model, facts: Sequence[Fact], layer: int, site: Site) -> torch.Tensor:
    """[facts, d_model] float64: the site's value at the subject's last token of each plain prompt."""
    texts = [fact.text for fact in facts]
    positions = [last_subject_positions(model, fact, [(fact.text, 0)])[0] for fact in facts]
    rows = torch.arange(len(facts))
    if site == "resid":
        hook = f"blocks.{layer}.resid_post"
        run = model.run(texts, cache=[hook], stop_at_layer=layer + 1)
        return run.cache[hook][rows, torch.tensor(positions)].double().cpu()
    captured: list[torch.Tensor] = []
    with _projection_hook(model, layer, lambda out: captured.append(out.detach()) or out):
        model.run(texts, stop_at_layer=layer + 1)
    return captured[0][rows, torch.tensor(positions)].double().cpu()


@dataclass(frozen=True)
class Targets:
    """Optimised deltas at a site, one per fact, with how the optimisation went."""

    site: Site
    layer: int
    deltas: torch.Tensor  # [facts, d_model] float64
    initial: torch.Tensor  # [facts, d_model] float64: the site's value in each plain prompt
    nll_before: list[float]  # mean NLL of target_new per fact, before
    nll_after: list[float]
    kl_after: list[float]
    steps: list[int]

    @property
    def values(self) -> torch.Tensor:
        """The new values the site should take (``initial + deltas``)."""
        return self.initial + self.deltas

    def summary(self) -> dict:
        return {
            "site": self.site,
            "layer": self.layer,
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "kl_after": self.kl_after,
            "steps": self.steps,
            "delta_norms": self.deltas.norm(dim=1).tolist(),
            "value_norms": self.initial.norm(dim=1).tolist(),
        }


def optimise_targets(
    model: Model,
    facts: Sequence[Fact],
    prefixes: Sequence[str],
    *,
    layer: int,
    site: Site,
    steps: int = 20,
    lr: float = 0.5,
    kl_factor: float = 0.0625,
    weight_decay: float = 0.5,
    clamp: float = 4.0,
) -> Targets:
    """Find each fact's delta at ``site`` of ``layer`` that makes its ``target_new`` likely (see module doc)."""
    if steps < 1 or lr <= 0:
        raise InputError("steps must be >= 1 and lr > 0")
    n = len(facts)
    batch = _optimisation_batch(model, facts, prefixes)
    ids, mask, spans, owners, essence_positions = batch.ids, batch.mask, batch.spans, batch.owners, batch.essence
    owners_all = torch.tensor(owners + list(range(n)))
    n_rewrite = len(owners)

    initial = site_values(model, facts, layer, site)
    delta = torch.zeros(n, model.d_model, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=lr)
    limit = clamp * initial.norm(dim=1).float()
    done = torch.zeros(n, dtype=torch.bool)
    frozen = torch.zeros(n, model.d_model)
    steps_taken = [0] * n
    reference: torch.Tensor | None = None
    nll_before: list[float] = []
    nll = kl = torch.zeros(n)

    def add(act: torch.Tensor) -> torch.Tensor:
        shift = delta.to(act.device, act.dtype)[owners_all.to(act.device)]  # [rows, d_model]
        return act + batch.where.to(act.device)[:, :, None] * shift[:, None, :]

    for step in progress(range(steps + 1), total=steps + 1, description="optimising new values", unit="step"):
        with _site(model, layer, site, add) as interventions:
            run = model.run(
                ids, attention_mask=mask, cache=["ln_final"], logits=False, grad=True, interventions=interventions
            )
        log_probs = target_log_probs(model, _rows(run, slice(0, n_rewrite)), spans)
        per_row_nll = -log_probs
        nll = torch.zeros(n).index_add(0, torch.tensor(owners), per_row_nll.float().cpu()) / len(prefixes)
        normed = run.cache["ln_final"][torch.arange(n_rewrite, ids.shape[0]), torch.tensor(essence_positions)]
        essence_log_probs = torch.log_softmax(decode(model, normed).float(), dim=-1)
        if reference is None:
            reference = essence_log_probs.detach()
            nll_before = nll.detach().tolist()
        kl = (reference.exp() * (reference - essence_log_probs)).sum(-1).cpu()
        decay = (delta.norm(dim=1) / initial.norm(dim=1).float().clamp_min(1e-12)) ** 2
        loss_per_fact = nll + kl_factor * kl + weight_decay * decay
        newly_done = (nll.detach() < _STOP_LOSS) & ~done
        frozen[newly_done] = delta.detach()[newly_done]
        done |= newly_done
        if bool(done.all()) or step == steps:
            break
        optimiser.zero_grad()
        loss_per_fact.sum().backward()
        optimiser.step()
        with torch.no_grad():
            scale = (limit / delta.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
            delta.mul_(scale[:, None])
            delta[done] = frozen[done]
        for i in range(n):
            steps_taken[i] += 0 if done[i] else 1
    final = torch.where(done[:, None], frozen, delta.detach())
    return Targets(
        site=site,
        layer=layer,
        deltas=final.double(),
        initial=initial,
        nll_before=nll_before,
        nll_after=nll.detach().tolist(),
        kl_after=kl.detach().tolist(),
        steps=steps_taken,
    )


@dataclass(frozen=True)
class _Batch:
    """The rows the optimisation runs: every fact's prefixed rewrite prompts, then each "{subject} is a"."""

    ids: torch.Tensor  # [rows, width] token ids, padded to one width
    mask: torch.Tensor  # [rows, width]
    spans: list[list[int]]  # where each rewrite row's target tokens are (teacher_forced)
    owners: list[int]  # the fact each rewrite row belongs to
    essence: list[int]  # per fact, the subject's last token in its "{subject} is a" row
    where: torch.Tensor  # [rows, width] bool: the subject's last token of every row, where the delta is added


def _optimisation_batch(model: Model, facts: Sequence[Fact], prefixes: Sequence[str]) -> _Batch:
    rewrite_prompts, rewrite_targets, owners, positions = [], [], [], []
    for i, fact in enumerate(facts):
        rows = edit_rows(fact, prefixes)
        rewrite_prompts += [text for text, _ in rows]
        rewrite_targets += [fact.target_new] * len(rows)
        owners += [i] * len(rows)
        positions += last_subject_positions(model, fact, rows)
    essence = [f"{fact.subject} is a" for fact in facts]
    essence_positions = [
        subject_span(model, text, fact.subject)[1] - 1 for text, fact in zip(essence, facts, strict=True)
    ]
    ids, mask, spans = teacher_forced(model, rewrite_prompts, rewrite_targets)
    essence_tokens = model.tokenize(essence)
    width = max(ids.shape[1], essence_tokens.input_ids.shape[1])
    ids = torch.cat([_pad(ids, width, model.pad_token_id), _pad(essence_tokens.input_ids, width, model.pad_token_id)])
    mask = torch.cat([_pad(mask, width, 0), _pad(essence_tokens.attention_mask, width, 0)])
    where = torch.zeros(ids.shape[0], width, dtype=torch.bool)
    where[torch.arange(ids.shape[0]), torch.tensor(positions + essence_positions)] = True
    return _Batch(ids, mask, spans, owners, essence_positions, where)


def _rows(run, rows: slice):
    """A view of a run restricted to some rows (for target_log_probs)."""
    from ...model.run import ActivationCache, Run

    return Run(
        run.tokens[rows], run.attention_mask[rows], None, ActivationCache({"ln_final": run.cache["ln_final"][rows]})
    )


def _pad(tensor: torch.Tensor, width: int, value: int) -> torch.Tensor:
    if tensor.shape[1] == width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), value, dtype=tensor.dtype)
    return torch.cat([tensor, pad], dim=1)


@contextlib.contextmanager
def _site(model: Model, layer: int, site: Site, fn) -> Iterator[list]:
    """Interventions (resid) or a module hook (proj) that pass the site's value through ``fn``."""
    if site == "resid":
        yield [Replace(f"blocks.{layer}.resid_post", fn=fn)]
        return
    with _projection_hook(model, layer, fn):
        yield []


@contextlib.contextmanager
def _projection_hook(model: Model, layer: int, fn) -> Iterator[None]:
    """Pass the MLP output projection's output through ``fn`` (no canonical hook sits before a post-norm)."""
    with local_hooks([model.block_module(layer, model.arch.mlp_out_proj)], "post", lambda _m, _a, output: fn(output)):
        yield
