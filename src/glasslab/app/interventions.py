"""Intervention operations: ablation, activation patching, the circuit graph, steering vectors and steering.

Every intervention a method applies is scoped to its call (``with model.intervene``), and the model lock
is held for the whole request, so no other request ever runs with it. Steering vectors are saved and read
by name only, inside the store (``store/steering/<model key>/<name>``): a client never names a path.
"""

from __future__ import annotations

import shutil

from fastapi import APIRouter, HTTPException, Path, Request

from ..errors import InputError
from ..interventions import Ablate, Clamp
from ..methods.intervene.ablation import MeanActivations, components, mean_activations
from ..methods.intervene.steering import load_steering_vector
from ..methods.observe.predict import predict
from ..operations import OPERATIONS as DECLARED
from ..operations.intervene import AblateOptions, AblationSweepOptions
from ..operations.patching import CircuitOptions, PatchOptions
from ..operations.steering import MakeVectorOptions, SteerOptions
from ..store import NAME_PATTERN, STEERING, list_artifacts, location
from .ops import Ctx, NotFound, declared, services, stamp
from .state import ModelState

VECTOR_NAME = NAME_PATTERN
router = APIRouter(prefix="/api", tags=["interventions"])


def predict_at(ctx: Ctx, prompt: str, position: int, k: int):
    """``predict`` decoding only ``position`` (the full unembedding of every position costs far more)."""
    run = ctx.model.run(prompt, cache=["ln_final"], logits=False)
    return predict(ctx.model, prompt, k=k, position=position, run=run)


def top_token(ctx: Ctx, prompt: str, position: int) -> int:
    """The model's top prediction at ``position``: the default target of the causal methods."""
    return predict_at(ctx, prompt, position, 1).top[0].token_id


def targets(ctx: Ctx, body, clean: str, corrupted: str | None = None, position: int = -1) -> tuple:
    """(target, versus): as given, else the clean prompt's top prediction (and, for a logit difference, the
    corrupted prompt's top prediction when it differs), so a first click works without typing tokens."""
    target, versus = body.target, body.versus
    if target is None and body.metric not in ("loss", "kl"):
        target = top_token(ctx, clean, position)
    if versus is None and body.metric == "logit_diff" and corrupted is not None:
        versus = top_token(ctx, corrupted, position)
        if versus == ctx.model.token_id(target, "target"):
            raise InputError(
                "versus: the corrupted prompt also predicts the target; give versus (e.g. ' John' against ' Mary')"
            )
    return target, versus


def public_ablations(body: AblateOptions, means: MeanActivations | None = None) -> list:
    """The same ablation as ``ablate`` (heads at ``attn.z``, layers at ``attn_out``/``mlp_out``, neurons at
    ``mlp.post``) as public interventions, to read the predictions under it: zeros, or with ``means`` each
    hook's mean activation (a Clamp to the per-head / per-neuron mean selects the same cells)."""
    positions = body.ablate_positions if body.ablate_positions is not None else [None]

    def knock(hook: str, **index) -> Ablate | Clamp:
        return Ablate(hook, **index) if means is None else Clamp(hook, value=means.values[hook], **index)

    out = [knock(f"blocks.{layer}.attn.z", head=head, position=p) for layer, head in body.heads for p in positions]
    out += [knock(f"blocks.{layer}.attn_out", position=p) for layer in body.attn_layers for p in positions]
    out += [knock(f"blocks.{layer}.mlp_out", position=p) for layer in body.mlp_layers for p in positions]
    out += [knock(f"blocks.{layer}.mlp.post", neuron=n, position=p) for layer, n in body.neurons for p in positions]
    return out


def top_tokens(prediction) -> list[dict]:
    return [{"token": s.token, "token_id": s.token_id, "probability": s.probability} for s in prediction.top]


def ablate_op(ctx: Ctx, body: AblateOptions) -> dict:
    ctx.prompt(body.prompt)
    for i, text in enumerate(body.reference or []):
        ctx.prompt(text, f"reference[{i}]")
    for layer in [*body.attn_layers, *body.mlp_layers]:
        ctx.layer(layer, "attn_layers/mlp_layers")
    heads, neurons = ctx.heads(body.heads), ctx.neurons(body.neurons)
    target, versus = targets(ctx, body, body.prompt, position=body.position)
    means = None
    if body.how == "mean":  # computed here once, for the metric and for the predictions under the same ablation
        chosen = components(
            ctx.model, heads=heads, attn_layers=body.attn_layers, mlp_layers=body.mlp_layers, neurons=neurons
        )
        hooks = sorted({c.hook for c in chosen}, key=ctx.model.hooks().index)
        reference = body.reference
        means = mean_activations(ctx.model, hooks, prompts=reference, corpus=None if reference else "builtin")
    spec = DECLARED["ablate"]
    reference = None if means else body.reference
    chosen = dict(target=target, versus=versus, heads=heads, neurons=neurons, reference=reference, means=means)
    result = spec.function(ctx.model, **(spec.arguments(body) | chosen)).to_dict()
    if body.how in ("zero", "mean"):  # the prediction change, for the panel (resample: the metric only)
        k = body.predictions_k
        clean = predict_at(ctx, body.prompt, body.position, k)
        with ctx.model.intervene(*public_ablations(body, means)):
            ablated = predict_at(ctx, body.prompt, body.position, k)
        result["predictions"] = {"clean": top_tokens(clean), "ablated": top_tokens(ablated)}
    return result


def ablation_sweep_op(ctx: Ctx, body: AblationSweepOptions) -> dict:
    ctx.prompt(body.prompt)
    for i, text in enumerate(body.reference or []):
        ctx.prompt(text, f"reference[{i}]")
    target, versus = targets(ctx, body, body.prompt, position=body.position)
    spec = DECLARED["ablation-sweep"]
    return spec.function(ctx.model, **(spec.arguments(body) | {"target": target, "versus": versus})).to_dict()


def patch_op(ctx: Ctx, body: PatchOptions) -> dict:
    ctx.prompt(body.clean, "clean")
    ctx.prompt(body.corrupted, "corrupted")
    for layer in body.layers or []:
        ctx.layer(layer, "layers")
    target, versus = targets(ctx, body, body.clean, body.corrupted)
    spec = DECLARED["patch"]
    return spec.function(ctx.model, **(spec.arguments(body) | {"target": target, "versus": versus})).to_dict()


def circuit_op(ctx: Ctx, body: CircuitOptions) -> dict:
    ctx.prompt(body.clean, "clean")
    ctx.prompt(body.corrupted, "corrupted")
    target, versus = targets(ctx, body, body.clean, body.corrupted, body.position)
    spec = DECLARED["circuit"]
    return spec.function(ctx.model, **(spec.arguments(body) | {"target": target, "versus": versus})).to_dict()


def _check_pairs(ctx: Ctx, pairs) -> list[tuple[str, str]]:
    for i, (positive, negative) in enumerate(pairs):
        ctx.prompt(positive, f"pairs[{i}] positive")
        ctx.prompt(negative, f"pairs[{i}] negative")
    return [tuple(p) for p in pairs]


def make_vector_op(ctx: Ctx, body: MakeVectorOptions) -> dict:
    if body.layer is None and body.hook is None:
        raise InputError("layer: say at which layer to read the pairs' activations")
    ctx.layer(body.layer)
    spec = DECLARED["steering-vector"]
    vector = spec.function(ctx.model, **(spec.arguments(body) | {"pairs": _check_pairs(ctx, body.pairs)}))
    return _public(vector.to_dict())


def steer_op(ctx: Ctx, body: SteerOptions) -> dict:
    ctx.prompt(body.prompt)
    if body.vector is not None and body.pairs is None and not location(STEERING, ctx.model.key, body.vector).is_dir():
        raise NotFound(
            f"no saved steering vector '{body.vector}' for this model; GET /api/steering/vectors lists them, "
            "POST /api/steering-vector with a name saves one"
        )
    ctx.layer(body.layer)
    pairs = _check_pairs(ctx, body.pairs) if body.pairs is not None else None
    spec = DECLARED["steer"]
    return spec.function(ctx.model, **(spec.arguments(body) | {"pairs": pairs})).to_dict()


def steer_reads(state: ModelState, body: SteerOptions) -> tuple:
    """The saved vector's files as they are now (a result cached for them is stale once they change)."""
    if body.vector is None:
        return ()
    return stamp(location(STEERING, state.model.key, body.vector))


def _public(vector: dict) -> dict:
    """A vector's dict without its folder on disk (clients name vectors, never paths)."""
    return {k: v for k, v in vector.items() if k != "path"}


OPERATIONS = [
    declared(DECLARED["ablate"], ablate_op),
    declared(DECLARED["ablation-sweep"], ablation_sweep_op),
    declared(DECLARED["patch"], patch_op),
    declared(DECLARED["circuit"], circuit_op),
    declared(DECLARED["steering-vector"], make_vector_op, deterministic=lambda body: body.name is None),
    declared(
        DECLARED["steer"],
        steer_op,
        deterministic=lambda body: body.temperature == 0.0 or body.seed is not None,
        reads=steer_reads,
    ),
]


@router.get("/steering/vectors", tags=["steering"], summary="Saved steering vectors of the loaded model.")
def list_vectors(request: Request) -> dict:
    svc = services(request)

    def read(model) -> list[dict]:
        vectors = []
        for saved in list_artifacts(STEERING, model.key):
            try:
                vectors.append(_public(load_steering_vector(model, saved.name).to_dict()))
            except InputError:
                continue  # unreadable or another model's: not offered
        return vectors

    vectors = svc.state.run("listing steering vectors", read)
    return {"kind": "steering_vectors", "model": svc.state.model.name, "vectors": vectors}


@router.delete("/steering/vectors/{name}", tags=["steering"], summary="Delete a saved steering vector.")
def delete_vector(request: Request, name: str = Path(pattern=VECTOR_NAME)) -> dict:
    folder = location(STEERING, services(request).state.model.key, name)
    if not folder.is_dir():
        raise HTTPException(404, f"no saved steering vector '{name}' for this model")
    shutil.rmtree(folder)
    return {"kind": "deleted", "name": name}
