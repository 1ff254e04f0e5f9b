"""Describing a loaded model: what it is (``info``), which hooks it has (``hooks``) and how it splits a prompt
into tokens (``tokens``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..methods.observe.info import ModelInfo, info
from ..model.model import Model
from ..views.result import Record, Result
from .options import Options, PromptOptions
from .spec import OperationSpec


@dataclass(frozen=True)
class HookList(Result):
    """The model's hook names in forward order (``n_layers`` only labels the terminal's table)."""

    kind = "hooks"
    json_keys = ("model", "hooks")

    model: str
    hooks: list[str]
    n_layers: int


def hook_list(model: Model) -> HookList:
    """Every hook name ``model`` has (the names caches and interventions use)."""
    return HookList(model=model.name, hooks=model.hooks(), n_layers=model.n_layers)


@dataclass(frozen=True)
class TokenPiece(Record):
    """One token of a prompt: where it is, its text and its id."""

    position: int
    token: str
    token_id: int


@dataclass(frozen=True)
class TokenStrip(Result):
    """A prompt's tokens, BOS first when the tokenizer has one (the rule of ``Model.tokenize``)."""

    kind = "tokens"
    json_keys = ("model", "prompt", "n_tokens", "tokens")

    model: str
    prompt: str
    tokens: list[TokenPiece]

    def _json_n_tokens(self) -> int:
        return len(self.tokens)


def split_prompt(name: str, prompt: str, tokenizer: Any) -> TokenStrip:
    """``prompt`` split by ``tokenizer`` (the server passes its own copy, so it never waits behind model work)."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    ids = [bos, *ids] if bos is not None else ids
    pieces = [TokenPiece(i, tokenizer.decode([token_id]), token_id) for i, token_id in enumerate(ids)]
    return TokenStrip(model=name, prompt=prompt, tokens=pieces)


def token_strip(model: Model, prompt: str) -> TokenStrip:
    """The prompt's tokens with their ids and positions, as every other operation counts them."""
    return split_prompt(model.name, prompt, model.tokenizer)


class NoOptions(Options):
    """An operation that reads only the loaded model."""


GROUP = "model"
OPERATIONS = [
    OperationSpec(
        "info",
        NoOptions,
        info,
        ModelInfo,
        "Describe a model: family, layers, heads, widths, vocabulary, and where it is stored.",
        GROUP,
        # Its answer names the model's folder on this machine; the server describes its model without it
        # (GET /api/model).
        http=False,
    ),
    OperationSpec(
        "hooks",
        NoOptions,
        hook_list,
        HookList,
        "List the model's hook names (the names caches and interventions use) with their shapes.",
        GROUP,
    ),
    OperationSpec(
        "tokens",
        PromptOptions,
        token_strip,
        TokenStrip,
        "The prompt's tokens (BOS first) with their ids.",
        "analysis",  # listed with the prompt's analyses, where its endpoint has always been
    ),
]
