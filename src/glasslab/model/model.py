"""``Model``: a Hugging Face causal LM with canonical hook names, runs, generation and interventions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InputError
from .architectures import Architecture
from .generation import Generation, generate
from .hooks import HookName, InterventionLike, all_hook_names, expand_hook_names, parse_hook_name
from .offload import execution_device
from .run import ActivationCache, Run
from .session import HookSession, StopForward
from .weights import Weights

Prompts = str | Sequence[str] | torch.Tensor


@dataclass(eq=False)
class _Scope:
    """One ``model.intervene`` block (compared by identity, so closing it removes exactly it). ``open`` turns
    False on close, so the scope stops applying even in a context that copied it (an async task)."""

    model: Model
    interventions: tuple[InterventionLike, ...]
    open: bool = True


# The open intervene scopes of this thread / async task, outermost first: a scope applies only to the runs
# of the code that opened it, never to another thread using the same model.
_SCOPES: ContextVar[tuple[_Scope, ...]] = ContextVar("glasslab_scopes", default=())


@dataclass(frozen=True)
class Tokens:
    """Token ids, right-padded, with the mask marking real tokens."""

    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]


class Model:
    """A loaded causal LM. Build it with ``glasslab.load``.

    BOS: every prompt starts with the tokenizer's BOS token when it has one (``prepend_bos=True``, the
    default), whether or not the tokenizer adds it by itself, so position 0 is the same kind of token
    in every family. Pass ``prepend_bos=False`` to tokenize the text alone.
    """

    def __init__(
        self,
        hf_model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        arch: Architecture,
        *,
        name: str,
        stored_at: Path | None = None,
    ) -> None:
        # Weights are frozen: gradients, when asked for, flow to activations (see run(grad=True)).
        self.hf = hf_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.arch = arch
        self.name = name
        self.stored_at = stored_at
        config = hf_model.config
        self.config = config
        self.blocks = self.module(arch.blocks)
        self.n_layers = len(self.blocks)
        self.n_heads = int(config.num_attention_heads)
        self.n_kv_heads = int(getattr(config, "num_key_value_heads", None) or self.n_heads)
        self.d_model = int(config.hidden_size)
        self.d_head = int(getattr(config, "head_dim", None) or self.d_model // self.n_heads)
        self.d_mlp = int(
            getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * self.d_model
        )
        self.vocab_size = int(config.vocab_size)
        self.context_length = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0))
        self.parallel_residual = arch.is_parallel(config)
        # Canonical weights (``model.weights.W_O(layer)`` ...): one orientation for every family.
        self.weights = Weights(self)

    @property
    def _active(self) -> list[InterventionLike]:
        """The interventions of this model's scopes open in this thread / async task, outermost first."""
        return [i for scope in _SCOPES.get() if scope.open and scope.model is self for i in scope.interventions]

    # -- structure ----------------------------------------------------------------------------------
    def module(self, path: str) -> torch.nn.Module:
        return self.hf.get_submodule(path)

    def block_module(self, layer: int, path: str) -> torch.nn.Module:
        return self.blocks[layer].get_submodule(path)

    def hooks(self) -> list[str]:
        """Every hook name this model has, in forward order."""
        return all_hook_names(self.n_layers, self.parallel_residual)

    def expand_hooks(self, names: str | Sequence[str]) -> list[str]:
        """Concrete names for names or wildcard patterns (``blocks.*.resid_post``)."""
        return expand_hook_names(names, self.n_layers, self.parallel_residual)

    def hook_spec(self, name: str) -> HookName:
        return parse_hook_name(name, self.n_layers, self.parallel_residual)

    def index_sizes(self, spec: HookName) -> dict[str, int]:
        """The valid range of each index keyword at this hook."""
        if spec.layout == "kv_heads":
            return {"head": self.n_kv_heads}
        if spec.layout in ("query_heads", "pattern"):
            return {"head": self.n_heads}
        if spec.layout == "neurons":
            return {"neuron": self.d_mlp}
        return {}

    @property
    def key(self) -> str:
        """Store key for artifacts made for this model (lenses, vectors): its name, layer count and a hash
        of its config, so an artifact of another model or shape is never picked up."""
        config = {k: v for k, v in self.config.to_dict().items() if not k.startswith("_")}
        for transient in ("transformers_version", "dtype", "torch_dtype", "name_or_path", "architectures"):
            config.pop(transient, None)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or "model"
        return f"{name}-L{self.n_layers}-{digest}"

    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's device, or where accelerate runs it (its weight may be offloaded)."""
        embed = self.module(self.arch.embed)
        return execution_device(embed) or embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.module(self.arch.embed).weight.dtype

    # -- tokens -------------------------------------------------------------------------------------
    def tokenize(self, prompts: str | Sequence[str], prepend_bos: bool = True) -> Tokens:
        """Right-padded token ids and mask; one-line errors for empty or over-long prompts."""
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise InputError("no prompts given; pass at least one non-empty prompt")
        rows = []
        for text in texts:
            if not isinstance(text, str) or text == "":
                raise InputError("the prompt is empty; give at least one character of text")
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            bos = self.tokenizer.bos_token_id
            if prepend_bos and bos is not None:
                ids = [bos, *ids]
            self._check_length(len(ids))
            rows.append(ids)
        width = max(len(r) for r in rows)
        pad = self.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = 1
        return Tokens(input_ids, mask)

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = True) -> torch.Tensor:
        """[batch, pos] token ids (right-padded for several prompts)."""
        return self.tokenize(text, prepend_bos).input_ids

    def to_str_tokens(self, text: str | torch.Tensor | Sequence[int], prepend_bos: bool = True) -> list[str]:
        """Each token of one prompt as the text it stands for."""
        if isinstance(text, str):
            ids = self.tokenize(text, prepend_bos).input_ids[0].tolist()
        else:
            ids = torch.as_tensor(text).reshape(-1).tolist()
        return [self.tokenizer.decode([i]) for i in ids]

    def token_id(self, text: str | int, what: str = "token") -> int:
        """The first token of ``text`` (include any leading space, e.g. ``" Paris"``), or a token id as is;
        ``what`` names the argument in the error message."""
        if isinstance(text, int):
            if not 0 <= text < self.vocab_size:
                raise InputError(f"the {what} id {text} is outside the vocabulary (0..{self.vocab_size - 1})")
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InputError(f"the {what} is empty; give the text of a token, e.g. ' Paris'")
        return int(ids[0])

    @property
    def pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    def _check_length(self, n_tokens: int) -> None:
        if self.context_length and n_tokens > self.context_length:
            raise InputError(
                f"the prompt is {n_tokens} tokens but {self.name} reads at most {self.context_length}; "
                "shorten the prompt"
            )

    def _as_tokens(self, prompts: Prompts, attention_mask: torch.Tensor | None, prepend_bos: bool) -> Tokens:
        if isinstance(prompts, torch.Tensor):
            ids = prompts if prompts.dim() == 2 else prompts.reshape(1, -1)
            if ids.numel() == 0:
                raise InputError("the prompt is empty; give at least one token")
            if ids.min() < 0 or ids.max() >= self.vocab_size:
                raise InputError(f"token ids must lie in 0..{self.vocab_size - 1}")
            self._check_length(ids.shape[1])
            mask = torch.ones_like(ids) if attention_mask is None else attention_mask
            return Tokens(ids.long(), mask.long())
        return self.tokenize(prompts, prepend_bos)

    # -- runs ---------------------------------------------------------------------------------------
    def run(
        self,
        prompts: Prompts,
        *,
        cache: str | Sequence[str] = (),
        interventions: Sequence[InterventionLike] = (),
        stop_at_layer: int | None = None,
        logits: bool = True,
        grad: bool = False,
        prepend_bos: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> Run:
        """One forward pass, caching the named hooks (wildcards allowed) with interventions applied.

        ``stop_at_layer=L`` runs blocks 0..L-1 only (no logits); ``logits=False`` skips the
        unembedding; ``grad=True`` keeps the autograd graph so cached activations and logits can be
        differentiated (the embedding output is the graph's leaf; weights stay frozen). Interventions
        opened with ``model.intervene`` apply too, before these.
        """
        tokens = self._as_tokens(prompts, attention_mask, prepend_bos)
        if stop_at_layer is not None and not (0 <= stop_at_layer <= self.n_layers):
            raise InputError(f"stop_at_layer must be in 0..{self.n_layers}, got {stop_at_layer}")
        names = self.expand_hooks(cache) if cache else []
        need_logits = logits and stop_at_layer is None
        session = HookSession(
            self,
            names,
            [*self._active, *interventions],
            tokens.attention_mask.sum(1),
            tokens.input_ids.shape[1],
            keep_graph=grad,
            stop_at_layer=stop_at_layer,
            need_logits=need_logits,
        )
        output_logits = None
        grad_mode = contextlib.nullcontext() if grad else torch.inference_mode()
        # Without padding, no mask: the call is then exactly the plain Hugging Face forward.
        padded = not bool(tokens.attention_mask.all())
        mask = tokens.attention_mask.to(self.device) if padded else None
        with grad_mode, session:
            try:
                output = self.hf(input_ids=tokens.input_ids.to(self.device), attention_mask=mask, use_cache=False)
                output_logits = output.logits if need_logits else None
            except StopForward:
                pass
        if output_logits is not None:
            _check_finite(output_logits, tokens.attention_mask.sum(1))
        return Run(tokens.input_ids, tokens.attention_mask, output_logits, ActivationCache(session.cache))

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 30,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        interventions: Sequence[InterventionLike] = (),
        prepend_bos: bool = True,
    ) -> Generation:
        """Continue ``prompt`` greedily (``temperature=0``) or by sampling, with interventions applied."""
        return generate(
            self,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            interventions=interventions,
            prepend_bos=prepend_bos,
        )

    @contextlib.contextmanager
    def intervene(self, *interventions: InterventionLike) -> Iterator[Model]:
        """Apply interventions to every run and generation inside the ``with`` block, and only there: only
        in this thread (or async task), so other threads using the model meanwhile are unaffected. Scopes
        may close in any order; each removes only its own interventions."""
        for intervention in interventions:
            if not isinstance(intervention, InterventionLike):
                raise InputError(f"intervene() takes Ablate/Patch/Add/Clamp/Replace values, not {intervention!r}")
            for name in self.expand_hooks(intervention.hook):
                spec = self.hook_spec(name)
                intervention.check_index(name, spec.layout, self.index_sizes(spec))
        scope = _Scope(self, interventions)
        _SCOPES.set((*_SCOPES.get(), scope))
        try:
            yield self
        finally:
            scope.open = False
            _SCOPES.set(tuple(s for s in _SCOPES.get() if s.open))

    # -- maths shared by methods ---------------------------------------------------------------------
    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits from a residual-stream vector: the model's own final norm, unembedding and soft-cap."""
        logits = self.module(self.arch.unembed)(self.module(self.arch.final_norm)(resid))
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def logits_at(self, run: Run, positions: Sequence[int], row: int = 0) -> torch.Tensor:
        """[len(positions), vocab] logits of prompt ``row``: the run's own, or, if the run skipped the
        unembedding (``logits=False``), the unembedding of its cached ``ln_final`` at those positions only
        (equal within float rounding, far cheaper for a large vocabulary, and decoded once per run)."""
        positions = list(positions)
        if run.logits is not None:
            return run.logits[row, torch.tensor(positions, dtype=torch.long, device=run.logits.device)]
        if "ln_final" not in run.cache:
            raise InputError("this run has neither logits nor a cached ln_final; run with logits=True")
        missing = sorted({p for p in positions if (row, p) not in run.decoded})
        if missing:
            normed = run.cache["ln_final"][row, missing]
            with torch.inference_mode():
                logits = self.module(self.arch.unembed)(normed)
                cap = getattr(self.config, "final_logit_softcapping", None)
                logits = torch.tanh(logits / cap) * cap if cap else logits
            run.decoded.update({(row, p): logits[i] for i, p in enumerate(missing)})
        return torch.stack([run.decoded[(row, p)] for p in positions])

    def output_weights(self, layer: int) -> torch.Tensor:
        """[head, d_head, d_model]: each head's slice of the attention output projection (``weights.W_O``)."""
        return self.weights.W_O(layer)

    def head_out(self, layer: int, z: torch.Tensor, pre_norm_sum: torch.Tensor | None) -> torch.Tensor:
        """[batch, pos, head, d_model]: each head's write into the residual stream (see session.py)."""
        out = torch.einsum("bshd,hdm->bshm", z, self.output_weights(layer).to(z.dtype))
        if pre_norm_sum is None:
            return out
        params = self.weights.post_attn_norm(layer)
        scale = params.scale(pre_norm_sum)  # frozen on the full sum, so the shares add up to attn_out
        return params.linear(out, scale[:, :, None]).to(z.dtype)

    def __repr__(self) -> str:
        return (
            f"Model({self.name!r}, {self.arch.name}, layers={self.n_layers}, heads={self.n_heads}, "
            f"d_model={self.d_model})"
        )


def _check_finite(logits: torch.Tensor, prompt_lengths: torch.Tensor) -> None:
    """NaN/inf anywhere reaches every later position through attention, so the last ones suffice."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    if not torch.isfinite(logits[rows, prompt_lengths.to(logits.device) - 1]).all():
        raise InputError(
            "the model produced NaN or infinite logits; check the interventions' values, or load in float32"
        )
