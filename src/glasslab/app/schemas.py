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
    PromptOptions,
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


# The sizes the workbench proposes for an SAE it trains (GET /api/saes "training", sent with each request): a
# few minutes on 2 CPU cores for the default model's middle layers (the estimate measures it for the layer and
# machine); a rough SAE, not one that meets the quality target. A request leaving one out gets the declared
# default (glasslab.operations.sae_training), but harvest_tokens: the server's pool is in memory.
TRAIN_HARVEST_TOKENS = 65_536
TRAIN_TOKENS = 262_144  # 64 steps of 4096: each harvested row is seen about 4 times
WORKBENCH_TRAINING = {
    "expansion": 8,
    "k": 32,
    "tokens": TRAIN_TOKENS,
    "harvest_tokens": TRAIN_HARVEST_TOKENS,
    "batch_size": 4096,
    "evaluate_tokens": 4096,
    "seed": 0,
}
