"""Intervention operations: ablation of chosen components, an ablation sweep over every head or layer, and
generation with neurons clamped."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..methods.intervene.ablation import Ablation, AblationSweep, ablate, ablation_sweep
from ..methods.intervene.neuron_clamp import NeuronClamp, clamp_neurons
from .options import (
    MAX_BATCH,
    MAX_K,
    MAX_LIST,
    MAX_NEW_TOKENS,
    MAX_REFERENCE,
    Cli,
    HeadRef,
    Index,
    Metric,
    NeuronRef,
    Options,
    Position,
    Prompt,
    PromptOptions,
    Seed,
    Token,
)
from .scale import ClusterAddress, Workers
from .spec import OperationSpec

How = Literal["zero", "mean", "resample"]


class MetricOptions(Options):
    """What a causal method's effect is measured by (shared by ablation, patching and circuits)."""

    target: Annotated[
        Token | None, Field(description="The token the metric reads (e.g. ' Mary'); loss and kl need none.")
    ] = None
    versus: Annotated[Token | None, Field(description="Measure logit(target) - logit(versus) (e.g. ' John').")] = None
    metric: Annotated[Metric | None, Field(description="The metric (default: logit_diff with versus, else logit).")] = (
        None
    )
    position: Annotated[Position, Field(description="Position whose prediction the metric reads (-1: the last).")] = -1


class AblationBase(MetricOptions):
    prompt: Annotated[Prompt, Field(description="The text to run.")]
    ablate_positions: Annotated[
        list[Position] | None,
        Field(max_length=MAX_LIST, description="Ablate only at these token positions (default: every position)."),
        Cli(("--ablate-position",)),
    ] = None
    how: Annotated[How, Field(description="How a component is knocked out.")] = "zero"
    reference: Annotated[
        list[Prompt] | None,
        Field(min_length=1, max_length=MAX_REFERENCE, description="Reference prompts for mean or resample ablation."),
        Cli(("--reference",)),
    ] = None
    corpus: Annotated[
        str | None,
        Field(description="Corpus for mean ablation: 'builtin', a .txt/.jsonl file or folder, or hf:NAME."),
    ] = None
    seed: Annotated[Seed, Field(description="Seed for resample ablation's draws.")] = 0
    samples: Annotated[int, Field(ge=1, le=16, description="Resample draws to average over.")] = 1
    cluster: ClusterAddress = None
    workers: Workers = None


def _components(description: str) -> Any:
    """A list of components to knock out (none by default)."""
    return Field(default_factory=list, max_length=MAX_LIST, description=description)


class AblateOptions(AblationBase):
    heads: Annotated[list[HeadRef], _components("Heads as LAYER.HEAD."), Cli(("--head",))]
    attn_layers: Annotated[
        list[Index], _components("Layers whose whole attention block to ablate."), Cli(("--layer-attn",))
    ]
    mlp_layers: Annotated[list[Index], _components("Layers whose MLP block to ablate."), Cli(("--layer-mlp",))]
    neurons: Annotated[list[NeuronRef], _components("Neurons as LAYER.NEURON."), Cli(("--neuron",))]
    predictions_k: Annotated[
        int, Field(ge=1, le=MAX_K, description="Top tokens shown with and without the (zero or mean) ablation.")
    ] = 5


class AblationSweepOptions(AblationBase):
    over: Annotated[
        Literal["heads", "layers"], Field(description="heads (every head) or layers (every attention and MLP block).")
    ] = "heads"
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Ablations per forward pass.")] = 64


class ClampNeuronsOptions(PromptOptions):
    neurons: Annotated[
        list[NeuronRef],
        Field(min_length=1, max_length=MAX_LIST, description="Neurons as LAYER.NEURON."),
        Cli(("--neuron",)),
    ]
    value: Annotated[float | None, Field(ge=-1e4, le=1e4, description="Set the neurons to this value.")] = None
    scale: Annotated[float | None, Field(ge=-1e4, le=1e4, description="Multiply the neurons by this factor.")] = None
    zero: Annotated[bool, Field(description="Set the neurons to 0.")] = False
    positions: Annotated[
        list[Position] | None,
        Field(max_length=MAX_LIST, description="Clamp only at these positions (-1: the prompt's last token)."),
        Cli(("--position",)),
    ] = None
    max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="How many tokens to generate.")] = 20
    temperature: Annotated[float, Field(ge=0.0, le=5.0, description="0 for greedy decoding.")] = 0.0
    seed: Annotated[Seed | None, Field(description="Seed for sampling (both generations).")] = None


GROUP = "interventions"
OPERATIONS = [
    OperationSpec(
        "ablate",
        AblateOptions,
        ablate,
        Ablation,
        "Knock out heads, attention/MLP blocks or neurons together and compare a metric with the clean run.",
        GROUP,
        server_only=frozenset({"predictions_k"}),
        local_only=frozenset({"corpus", "cluster", "workers"}),
        python_only=frozenset({"means"}),
    ),
    OperationSpec(
        "ablation-sweep",
        AblationSweepOptions,
        ablation_sweep,
        AblationSweep,
        "Ablate every head (or every layer's attention and MLP) in turn: the metric's change per component.",
        GROUP,
        local_only=frozenset({"corpus", "cluster", "workers"}),
        python_only=frozenset({"means"}),
        long=True,
    ),
    OperationSpec(
        "clamp-neurons",
        ClampNeuronsOptions,
        clamp_neurons,
        NeuronClamp,
        "Generate with and without MLP neurons set to a value, scaled or zeroed, side by side.",
        GROUP,
        long=True,
    ),
]
