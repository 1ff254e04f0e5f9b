"""Request bodies of the HTTP API, with their limits.

Pydantic checks shapes and fixed limits (422); anything that depends on the loaded model or the prompt's
token count (layer and head indices, positions, the prompt's length in tokens) is checked by the
operation against the model and answered with a 400 that names the field (see ops.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# -- limits (characters, tokens, sizes); docs/http-api.md quotes these -----------------------------------------
MAX_PROMPT_CHARS = 4000
MAX_PROMPT_TOKENS = 512
MAX_NEW_TOKENS = 200
MAX_K = 100
MAX_SCALES = 16
MAX_PAIRS = 64
MAX_LIST = 512  # positions, heads, neurons, candidates
MAX_REFERENCE = 32
MAX_BATCH = 256
MAX_SEEDS = 2**31 - 1
MAX_NAME = 200
MAX_ALL_PATTERNS = 64
MAX_EXPERIMENT_BYTES = 16 * 1024 * 1024

Prompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Index = Annotated[int, Field(ge=0, le=1_000_000)]
Position = Annotated[int, Field(ge=-MAX_PROMPT_TOKENS, le=MAX_PROMPT_TOKENS - 1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEEDS)]
Metric = Literal["logit", "logit_diff", "prob", "loss", "kl"]
VectorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
LayerIndex = tuple[Index, Index]  # (layer, head) or (layer, neuron)


class Body(BaseModel):
    """Every body: unknown fields are errors (a typo must not be silently ignored), and so is a string with a
    lone surrogate (JSON's ``"\\ud800"``), which is no text: it could be neither tokenized nor stored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _whole_characters(cls, data: object) -> object:
        where = _surrogate_at(data, "")
        if where is not None:
            raise ValueError(f"{where or 'body'} holds a lone UTF-16 surrogate (like \\ud800); send valid Unicode text")
        return data


def _surrogate_at(data: object, where: str) -> str | None:
    """The path of the first string (value or key) holding a lone surrogate, else None (a loop, not recursion:
    nesting depth is the client's choice)."""
    todo: list[tuple[object, str]] = [(data, where)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")  # fails exactly on lone surrogates, at C speed
            except UnicodeEncodeError:
                return path
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")  # printable in the message
            inner = f"{path}.{name}" if path else name
            todo += [(key, inner), (item, inner)]
    return None


class PromptBody(Body):
    prompt: Prompt


class TokensBody(PromptBody):
    pass


class OverviewBody(PromptBody):
    k: int = Field(10, ge=1, le=MAX_K)
    position: Position = -1


class PredictBody(PromptBody):
    k: int = Field(10, ge=1, le=MAX_K)
    position: Position = -1
    target: Token | None = None


class AttentionBody(PromptBody):
    layer: Index | None = None
    head: Index | None = None
    query_position: Position = -1
    top_k: int = Field(5, ge=1, le=MAX_K)
    all_patterns: bool = False  # also every head's full pattern (prompts up to MAX_ALL_PATTERNS tokens)


class HeadRolesBody(Body):
    prompt: Prompt | None = None
    seq_len: int = Field(50, ge=4, le=256)
    n_seqs: int = Field(16, ge=1, le=64)
    seed: Seed = 0
    batch_size: int = Field(16, ge=1, le=64)


class LogitLensBody(PromptBody):
    k: int = Field(5, ge=1, le=20)
    target: Token | None = None
    positions: list[Position] | None = Field(None, max_length=MAX_LIST)
    candidates: list[Token] | None = Field(None, max_length=20)
    candidate_position: Position = -1


class DlaBody(PromptBody):
    target: Token | None = None  # None: the model's top prediction at `position`
    versus: Token | None = None
    position: Position = -1
    top_neurons: int = Field(10, ge=0, le=MAX_K)


class NeuronsBody(PromptBody):
    position: Position = -1
    layer: Index | None = None
    top: int = Field(10, ge=1, le=MAX_K)
    target: Token | None = None
    versus: Token | None = None


class GenerateBody(PromptBody):
    max_new_tokens: int = Field(30, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = None


class MetricFields(Body):
    target: Token | None = None
    versus: Token | None = None
    metric: Metric | None = None
    position: Position = -1


class AblateBody(MetricFields):
    prompt: Prompt
    heads: list[LayerIndex] = Field(default_factory=list, max_length=MAX_LIST)
    attn_layers: list[Index] = Field(default_factory=list, max_length=MAX_LIST)
    mlp_layers: list[Index] = Field(default_factory=list, max_length=MAX_LIST)
    neurons: list[LayerIndex] = Field(default_factory=list, max_length=MAX_LIST)
    ablate_positions: list[Position] | None = Field(None, max_length=MAX_LIST)
    how: Literal["zero", "mean", "resample"] = "zero"
    reference: list[Prompt] | None = Field(None, min_length=1, max_length=MAX_REFERENCE)
    seed: Seed = 0
    samples: int = Field(1, ge=1, le=16)
    predictions_k: int = Field(5, ge=1, le=MAX_K)  # top tokens with and without the (zero) ablation


class AblationSweepBody(MetricFields):
    prompt: Prompt
    over: Literal["heads", "layers"] = "heads"
    ablate_positions: list[Position] | None = Field(None, max_length=MAX_LIST)
    how: Literal["zero", "mean", "resample"] = "zero"
    reference: list[Prompt] | None = Field(None, min_length=1, max_length=MAX_REFERENCE)
    seed: Seed = 0
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)


class PatchBody(Body):
    clean: Prompt
    corrupted: Prompt
    target: Token | None = None
    versus: Token | None = None
    metric: Metric | None = None
    site: Literal[
        "resid_pre",
        "resid_mid",
        "resid_post",
        "attn_out",
        "mlp_out",
        "attn.head_out",
        "attn.z",
        "attn.q",
        "attn.k",
        "attn.v",
        "attn.pattern",
    ] = "resid_pre"
    position: Position | Literal["each", "all"] | None = None
    layers: list[Index] | None = Field(None, min_length=1, max_length=MAX_LIST)
    noising: bool = False
    align: Literal["left", "right"] | None = None
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH)


class CircuitBody(Body):
    clean: Prompt
    corrupted: Prompt
    target: Token | None = None
    versus: Token | None = None
    metric: Metric = "logit_diff"
    position: Position = -1
    top: int = Field(10, ge=1, le=50)
    threshold: float | None = Field(None, ge=0.0, le=1e6)
    head_edges: bool = False
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)


Pair = tuple[Prompt, Prompt]


class MakeVectorBody(Body):
    name: VectorName | None = None  # given: saved in the store under this name (replacing one of that name)
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)
    layer: Index
    method: Literal["caa", "actadd", "pca"] = "caa"
    position: Literal["last", "mean"] = "last"


class SteerBody(PromptBody):
    vector: VectorName | None = None  # a saved vector's name, or:
    pairs: list[Pair] | None = Field(None, min_length=1, max_length=MAX_PAIRS)  # make one on the fly
    layer: Index | None = None  # with pairs
    method: Literal["caa", "actadd", "pca"] = "caa"
    scales: list[Annotated[float, Field(ge=-1000.0, le=1000.0)]] = Field([4.0], min_length=1, max_length=MAX_SCALES)
    max_new_tokens: int = Field(30, ge=1, le=MAX_NEW_TOKENS)
    positions: list[Position] | None = Field(None, max_length=MAX_LIST)
    positive_token: Token | None = None
    negative_token: Token | None = None
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    seed: Seed | None = None


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


SaeName = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class SaeFeaturesBody(PromptBody):
    sae: SaeName | None = None  # a name from GET /api/saes; default the first on disk
    top: int = Field(5, ge=1, le=MAX_K)
    # Features firing on more than this share of tokens go to each token's "dense" list, not its "top".
    max_density: float | None = Field(None, ge=0.0, le=1.0)


class SaeLabelBody(Body):
    sae: SaeName | None = None
    feature: Index
    label: Annotated[str, StringConstraints(max_length=1000)] | None = None  # checked: 1..200 characters
    clear: bool = False  # remove your label: the SAE's own shows again


class FeatureDashboardBody(Body):
    sae: SaeName | None = None
    feature: Index
    # Sequences of the built-in corpus to scan live; left out, the SAE's precomputed dashboards are read when
    # it has them (instant), else 64 sequences of 64 tokens are scanned.
    sequences: int | None = Field(None, ge=1, le=512)
    seq_len: int | None = Field(None, ge=8, le=256)
    k: int = Field(10, ge=1, le=50)


class SaePrecomputeBody(Body):
    sae: SaeName  # an SAE trained into the store (store:NAME); shipped ones come precomputed
    sequences: int = Field(1024, ge=16, le=8192)  # train-split sequences scanned for contexts and labels
    held_out_sequences: int = Field(256, ge=16, le=2048)  # test-split sequences for the detection scores


class FeatureClampBody(PromptBody):
    sae: SaeName | None = None
    features: list[Index] = Field(min_length=1, max_length=64)
    mode: Literal["value", "scale", "zero"] = "value"
    amount: float | None = Field(None, ge=-1e4, le=1e4)  # the value or scale (not for zero)
    amounts: list[Annotated[float, Field(ge=-1e4, le=1e4)]] | None = Field(None, min_length=1, max_length=MAX_SCALES)
    positions: list[Position] | None = Field(None, max_length=MAX_LIST)
    max_new_tokens: int = Field(20, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    seed: Seed | None = None


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
