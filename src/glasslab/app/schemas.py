"""Request bodies of the HTTP API's own endpoints, with their limits (declared operations' bodies are their
options, in ``glasslab.operations``).

Pydantic checks shapes and fixed limits (422); anything that depends on the loaded model or the prompt's
token count (layer and head indices, positions, the prompt's length in tokens) is checked by the
operation against the model and answered with a 400 that names the field (see ops.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..operations.options import (  # the limits and types every operation's options share
    MAX_EXPERIMENT_BYTES,  # noqa: F401 (experiments.py reads it here)
    MAX_NAME,
    MAX_PROMPT_CHARS,
    Index,
    PromptOptions,
    Seed,
    VectorName,
)
from ..operations.options import Options as Body

PromptBody = PromptOptions


class LoadModelBody(Body):
    source: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class JobBody(Body):
    kind: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    params: dict = Field(default_factory=dict)


class ExperimentBody(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, strip_whitespace=True)]
    prompt: Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)] = ""
    model: Annotated[str, StringConstraints(max_length=500)] | None = None  # default: the loaded model's name
    settings: dict = Field(default_factory=dict)
    interventions: list = Field(default_factory=list)
    results: dict = Field(default_factory=dict)


class RenameBody(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, strip_whitespace=True)]


# An SAE trained from the workbench: a few minutes on 2 CPU cores for the default model's middle layers
# (the estimate measures it for the layer and machine); a rough SAE, not one that meets the quality target.
TRAIN_HARVEST_TOKENS = 65_536
TRAIN_TOKENS = 262_144  # 64 steps of 4096: each harvested row is seen about 4 times
MAX_TRAIN_TOKENS = 4_194_304
MAX_HARVEST_TOKENS = 524_288


class SaeTrainBody(Body):
    layer: Index  # the SAE reads blocks.<layer>.resid_post
    expansion: int = Field(8, ge=1, le=64)  # features = expansion x the model's width
    k: int = Field(32, ge=1, le=512)  # active features per token (TopK)
    tokens: int = Field(TRAIN_TOKENS, ge=64, le=MAX_TRAIN_TOKENS)  # activation rows trained on (steps x batch)
    harvest_tokens: int = Field(TRAIN_HARVEST_TOKENS, ge=64, le=MAX_HARVEST_TOKENS)  # rows read from the model
    batch_size: int = Field(4096, ge=64, le=16_384)
    evaluate_tokens: int = Field(4096, ge=0, le=65_536)  # held-out tokens for FVE, L0 and dead features
    seed: Seed = 0
    name: VectorName | None = None  # a plain name, as for vectors; default: <hook>-topk-<width>-k<k>-app
