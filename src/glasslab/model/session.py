"""One call's hooks: install what a run or generation asks for, and remove every trace after.

A ``HookSession`` is built per call from the hook names to cache and the interventions to apply. It
hooks only the modules those names need, switches the attention implementation only when attention
internals are asked for, and undoes everything in ``__exit__`` (also on an exception), so the model
outside a call is exactly the Hugging Face model it was.

Module hooks are shared by every thread using the model, so each of a session's hooks acts only in
the session's own forward passes (the session is a context variable while it is open: one per thread or
async task) and does nothing in anyone else's; the attention switch is counted (see ``attention.py``).

Where each canonical hook lives (module paths come from the family's ``Architecture``):

- ``embed``: output of the token embedding; ``ln_final``: output of the final norm.
- ``resid_pre`` / ``resid_post``: input / output of the block.
- ``attn_out`` / ``mlp_out``: output of the attention / MLP module, or of the post-norm that follows
  it in post-norm families (Gemma 2/3), i.e. exactly what is added to the residual stream.
- ``resid_mid``: ``resid_pre + attn_out``, the same addition the block performs; an edit of it is
  carried into the block by editing ``attn_out`` by the difference.
- ``attn.q|k|v|pattern|z``: inside the attention function (see ``attention.py``).
- ``attn.head_out``: head ``h``'s share of ``attn_out``, ``z[..., h, :] @ W_O[h]``. In post-norm
  families the post-norm's input is the sum of these shares, and RMSNorm is linear once its scale
  ``rsqrt(mean(x^2) + eps)`` is fixed, so ``head_out`` is each share times that scale (computed on the
  full sum) and the norm weight: the shares then add up to ``attn_out`` exactly. An edit of
  ``head_out`` changes ``attn_out`` by the edit's sum over heads, with the norm scale held fixed;
  to let the norm react, edit ``attn.z`` instead.
- ``mlp.in``: input of the MLP module, i.e. after the norm it reads through (what transcoders read).
- ``mlp.post``: input of the MLP output projection (the neuron activations).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import torch

from . import attention
from .hooks import ATTENTION_INTERNALS, ApplyContext, InterventionLike

if TYPE_CHECKING:
    from .model import Model


class StopForward(Exception):
    """Raised by a hook to end the forward pass early (stop_at_layer, or no logits needed)."""


# The session whose forward pass runs in this thread / async task, if any.
_CURRENT: ContextVar[HookSession | None] = ContextVar("glasslab_session", default=None)
# The owners of the ``local_hooks`` blocks open in this thread / async task.
_LOCAL_OWNERS: ContextVar[frozenset[object]] = ContextVar("glasslab_local_hooks", default=frozenset())


@contextlib.contextmanager
def local_hooks(modules: Iterable[torch.nn.Module], kind: Literal["pre", "post"], fn: Callable) -> Iterator[None]:
    """Forward hooks (``kind`` "pre" or "post", ``fn`` as PyTorch calls it) on ``modules`` for the block's
    duration that act only in the thread or async task that opened the block: a module's hooks are shared by
    every thread using the model, and another thread's pass must not see this one's edits or checks."""
    owner = object()
    _LOCAL_OWNERS.set(_LOCAL_OWNERS.get() | {owner})

    def here_only(*args: Any) -> Any:
        return fn(*args) if owner in _LOCAL_OWNERS.get() else None

    handles = []
    try:
        for module in modules:
            register = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
            handles.append(register(here_only))
        yield
    finally:
        for handle in handles:
            handle.remove()
        _LOCAL_OWNERS.set(_LOCAL_OWNERS.get() - {owner})


class HookSession:
    """Caches and interventions for one call. Use as a context manager around the forward pass(es)."""

    def __init__(
        self,
        model: Model,
        cache: list[str],
        interventions: list[InterventionLike],
        prompt_lengths: torch.Tensor,
        max_length: int,
        *,
        keep_graph: bool = False,
        stop_at_layer: int | None = None,
        need_logits: bool = True,
    ) -> None:
        self.model = model
        self.keep_graph = keep_graph
        self.stop_at_layer = stop_at_layer
        self.need_logits = need_logits
        self.cache_names = set(cache)
        self.prompt_lengths = prompt_lengths.cpu()
        self.bound: dict[str, list[InterventionLike]] = defaultdict(list)
        for intervention in interventions:
            for name in model.expand_hooks(intervention.hook):
                spec = model.hook_spec(name)
                intervention.check_index(name, spec.layout, model.index_sizes(spec))
                intervention.check_positions(prompt_lengths, max_length)
                self.bound[name].append(intervention)
        self.wanted = self.cache_names | set(self.bound)
        self.cache: dict[str, torch.Tensor] = {}
        self.offset = 0
        self._seen = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._handlers: dict[int, _LayerAttention] = {}
        self._tokens: tuple[Token, Token] | None = None
        self._base_attention: str | None = None  # the model's own implementation, while switched
        self._resid_pre: dict[int, torch.Tensor] = {}
        self._z: dict[int, torch.Tensor] = {}
        self._any_attention = False

    # -- the one place where cached values and interventions meet --------------------------------
    def process(self, name: str, value: torch.Tensor, layout: str) -> torch.Tensor:
        """Apply this hook's interventions in order, cache the result, and return it."""
        interventions = self.bound.get(name, ())
        if interventions:
            # Keys cover the positions seen so far, or only the last window of a sliding-window cache.
            n_keys = value.shape[3] if layout == "pattern" else value.shape[1]
            key_offset = self._seen - n_keys if layout in ("kv_heads", "pattern") else 0
            ctx = ApplyContext(name, self.offset, key_offset, self.prompt_lengths)
        for intervention in interventions:
            value = intervention.apply(value, layout, ctx)
        if name in self.cache_names:
            self.cache[name] = value if self.keep_graph else value.detach()
        return value

    def wants(self, *names: str) -> bool:
        return any(name in self.wanted for name in names)

    # -- install / remove -------------------------------------------------------------------------
    def __enter__(self) -> HookSession:
        self._tokens = (_CURRENT.set(self), attention.HANDLERS.set(MappingProxyType(self._handlers)))
        try:
            self._install()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    def _hook(self, module: torch.nn.Module, kind: str, fn: Callable[..., Any], **kwargs: bool) -> None:
        def in_this_call(*args: Any) -> Any:
            return fn(*args) if _CURRENT.get() is self else None  # another thread's pass: leave it be

        register = {"pre": module.register_forward_pre_hook, "post": module.register_forward_hook}[kind]
        self._handles.append(register(in_this_call, **kwargs))

    def _install(self) -> None:
        m = self.model
        self._hook(m.hf, "pre", self._on_model_start, with_kwargs=True)
        self._hook(m.hf, "post", self._on_model_end)
        if self.wants("embed") or self.keep_graph:
            self._hook(m.module(m.arch.embed), "post", self._on_embed)
        # Once the model switches to glasslab's attention, every layer needs a handler (a pass-through
        # where nothing is asked), so each keeps the model's own implementation (e.g. Gemma 2's eager).
        self._any_attention = any(
            self.wants(f"blocks.{layer}.{site}") for layer in range(m.n_layers) for site in ATTENTION_INTERNALS
        )
        layers = range(m.n_layers if self.stop_at_layer is None else min(self.stop_at_layer, m.n_layers))
        if self._any_attention and layers:
            modules = [m.block_module(layer, m.arch.attn) for layer in range(m.n_layers)]
            self._base_attention = attention.switch_on(m.hf, modules)
        for layer in layers:
            self._install_layer(layer)
        if self.stop_at_layer is not None:
            self._install_stop()
        elif self.wants("ln_final") or not self.need_logits:
            self._hook(m.module(m.arch.final_norm), "post", self._on_final_norm)

    def _install_layer(self, layer: int) -> None:
        m, arch = self.model, self.model.arch
        block = m.blocks[layer]
        n = f"blocks.{layer}."
        if self.wants(n + "resid_pre", n + "resid_mid"):
            self._hook(block, "pre", self._resid_pre_hook(layer), with_kwargs=True)
        if self._base_attention is not None:
            handler = _LayerAttention(self, layer, self._base_attention)
            self._handlers[id(m.block_module(layer, arch.attn))] = handler
        if self.wants(n + "attn_out", n + "attn.head_out", n + "resid_mid"):
            if arch.post_attn_norm:
                self._hook(m.block_module(layer, arch.post_attn_norm), "post", self._attn_out_hook(layer))
            else:
                self._hook(m.block_module(layer, arch.attn), "post", self._attn_out_hook(layer))
        if self.wants(n + "mlp.in"):
            self._hook(m.block_module(layer, arch.mlp), "pre", self._mlp_in_hook(layer))
        if self.wants(n + "mlp.post"):
            self._hook(m.block_module(layer, arch.mlp_out_proj), "pre", self._neurons_hook(layer))
        if self.wants(n + "mlp_out"):
            site = arch.post_mlp_norm or arch.mlp
            self._hook(
                m.block_module(layer, site), "post", lambda _m, _a, out: self.process(n + "mlp_out", out, "resid")
            )
        if self.wants(n + "resid_post"):
            self._hook(block, "post", self._resid_post_hook(layer))

    def _install_stop(self) -> None:
        m = self.model
        last = self.stop_at_layer >= m.n_layers
        target = m.module(m.arch.final_norm) if last else m.blocks[self.stop_at_layer]
        self._hook(target, "pre", _raise_stop)

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._handlers.clear()
        if self._base_attention is not None:
            attention.switch_off(self.model.hf)
            self._base_attention = None
        if self._tokens is not None:
            _CURRENT.reset(self._tokens[0])
            attention.HANDLERS.reset(self._tokens[1])
            self._tokens = None
        self._resid_pre.clear()
        self._z.clear()

    # -- hook functions ---------------------------------------------------------------------------
    def _on_model_start(self, _module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            input_ids = kwargs["inputs_embeds"]
        self.offset = self._seen
        self._seen += input_ids.shape[1]

    def _on_model_end(self, _module, _args, output):
        if "logits" in self.cache_names and getattr(output, "logits", None) is not None:
            self.cache["logits"] = output.logits if self.keep_graph else output.logits.detach()

    def _on_embed(self, _module, _args, output):
        if self.keep_graph:  # make the embeddings the leaf of the graph, since weights are frozen
            output = output.detach().requires_grad_(True)
        return self.process("embed", output, "resid") if self.wants("embed") else output

    def _on_final_norm(self, _module, _args, output):
        output = self.process("ln_final", output, "resid")
        if not self.need_logits:
            raise StopForward
        return output

    def _resid_pre_hook(self, layer: int):
        name = f"blocks.{layer}.resid_pre"

        def hook(_module, args, kwargs):
            positional = bool(args)
            hidden = args[0] if positional else kwargs["hidden_states"]
            new = self.process(name, hidden, "resid")
            self._resid_pre[layer] = new
            if new is hidden:
                return None
            if positional:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return hook

    def _attn_out_hook(self, layer: int):
        prefix = f"blocks.{layer}."
        post_norm = self.model.arch.post_attn_norm is not None

        def hook(module, args, output):
            is_tuple = isinstance(output, tuple)
            attn_out = output[0] if is_tuple else output
            if self.wants(prefix + "attn.head_out"):
                head_out = self.model.head_out(layer, self._z.pop(layer), args[0] if post_norm else None)
                new_head_out = self.process(prefix + "attn.head_out", head_out, "query_heads")
                if new_head_out is not head_out:
                    attn_out = attn_out + (new_head_out - head_out).sum(dim=2)
            attn_out = self.process(prefix + "attn_out", attn_out, "resid")
            if self.wants(prefix + "resid_mid"):
                resid_pre = self._resid_pre[layer]
                resid_mid = resid_pre + attn_out
                new_mid = self.process(prefix + "resid_mid", resid_mid, "resid")
                if new_mid is not resid_mid:
                    attn_out = new_mid - resid_pre
            return (attn_out, *output[1:]) if is_tuple else attn_out

        return hook

    def _neurons_hook(self, layer: int):
        return self._first_argument_hook(f"blocks.{layer}.mlp.post", "neurons")

    def _mlp_in_hook(self, layer: int):
        return self._first_argument_hook(f"blocks.{layer}.mlp.in", "resid")

    def _first_argument_hook(self, name: str, layout: str):
        """A pre-hook that reads (and may replace) a module's first positional input."""

        def hook(_module, args):
            new = self.process(name, args[0], layout)
            return None if new is args[0] else (new, *args[1:])

        return hook

    def _resid_post_hook(self, layer: int):
        name = f"blocks.{layer}.resid_post"

        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = self.process(name, hidden, "resid")
            if new is hidden:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook


class _LayerAttention:
    """The attention handler for one layer of one session (see attention.AttentionHandler)."""

    def __init__(self, session: HookSession, layer: int, base_implementation: str) -> None:
        self.session = session
        self.layer = layer
        self.prefix = f"blocks.{layer}.attn."
        self.base_implementation = base_implementation if base_implementation in ("eager", "sdpa") else "sdpa"
        self.needs_pattern = session.wants(self.prefix + "pattern")
        self.keep_z = session.wants(self.prefix + "head_out")

    def on_qkv(self, q, k, v):
        # HF passes [batch, heads, pos, d_head]; hooks see [batch, pos, heads, d_head].
        out = []
        for site, tensor, layout in (("q", q, "query_heads"), ("k", k, "kv_heads"), ("v", v, "kv_heads")):
            name = self.prefix + site
            if self.session.wants(name):
                view = tensor.transpose(1, 2)
                new = self.session.process(name, view, layout)
                tensor = tensor if new is view else new.transpose(1, 2)
            out.append(tensor)
        return tuple(out)

    def on_pattern(self, pattern):
        return self.session.process(self.prefix + "pattern", pattern, "pattern")

    def on_z(self, z):
        z = self.session.process(self.prefix + "z", z, "query_heads")
        if self.keep_z:
            self.session._z[self.layer] = z
        return z


def _raise_stop(*_args) -> None:
    raise StopForward
