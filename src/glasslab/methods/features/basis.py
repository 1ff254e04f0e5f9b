"""Features as a basis of one hook's activation: the code path neurons and dictionary features share.

A ``FeatureBasis`` maps the hook's activation to feature values and gives what one unit of each feature
writes into the residual stream. Neurons are the identity basis of ``blocks.L.mlp.post`` (each writes its
``W_out`` row); an SAE's features are its encoder's output (each writes its decoder row through what
follows the hook); a transcoder's features are read from its input (``blocks.L.mlp.in``) and each writes its
decoder row into the residual stream (its output, ``mlp_out``, is what the MLP adds there). The
top-activating-contexts scan (``scan.scan_features``) and the promoted/suppressed
tokens (``token_effects``) read a basis only, so ``neuron_profile`` and the SAE dashboard are one view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...dictionaries import SAE
from ...dictionaries.transcoder import Transcoder
from ...errors import InputError
from ...model.model import Model

POST_NORM_NOTE = "This model normalises the block's output before adding it, so sizes are a direction only."


@dataclass(frozen=True)
class Context:
    activation: float  # the feature's largest activation in this sequence
    sequence: int  # index of the sequence in the scan
    position: int  # where in the sequence
    tokens: list[str]  # a window around that position
    activations: list[float]  # the feature's activation at each token of the window
    centre: int  # index of the max token inside the window


@dataclass(frozen=True)
class TokenEffect:
    token: str
    token_id: int
    value: float


class FeatureBasis:
    """Feature values at ``hook`` and each feature's residual write; ``signed`` bases (neurons) count every
    sequence in the top contexts, non-negative ones (SAE features) only sequences where a feature fired."""

    hook: str
    size: int  # number of features
    signed: bool
    through_final_norm: bool = True  # False for writes already past the final norm (ln_final)

    def values(self, act: torch.Tensor) -> torch.Tensor:
        """[..., size] feature values from the hook's activation."""
        raise NotImplementedError

    def writes(self, model: Model, features: list[int]) -> tuple[torch.Tensor | None, str]:
        """[F, d_model]: what one unit of each feature adds to the residual stream (None where the hook has
        no direct path to it), and a note for the reader."""
        raise NotImplementedError

    def check(self, feature: int) -> None:
        if not 0 <= feature < self.size:
            raise InputError(f"feature {feature} is out of range (valid: 0..{self.size - 1})")


class NeuronBasis(FeatureBasis):
    """The identity basis of ``blocks.{layer}.mlp.post``: feature ``n`` is neuron ``n``."""

    signed = True

    def __init__(self, model: Model, layer: int) -> None:
        if not 0 <= layer < model.n_layers:
            raise InputError(f"layer {layer} is out of range (valid: 0..{model.n_layers - 1})")
        self.layer, self.hook, self.size = layer, f"blocks.{layer}.mlp.post", model.d_mlp

    def values(self, act: torch.Tensor) -> torch.Tensor:
        return act

    def writes(self, model: Model, features: list[int]) -> tuple[torch.Tensor | None, str]:
        write = model.weights.W_out(self.layer)[features].detach().float()
        if model.arch.post_mlp_norm is None:
            return write, ""
        return write * model.weights.post_mlp_norm(self.layer).weight.to(write.device), POST_NORM_NOTE

    def check(self, feature: int) -> None:
        if not 0 <= feature < self.size:
            raise InputError(f"neuron {feature} is out of range (valid: 0..{self.size - 1})")


class DictionaryBasis(FeatureBasis):
    """An SAE's features at its hook: the encoder's output, each writing its decoder row."""

    signed = False

    def __init__(self, sae: SAE) -> None:
        self.sae, self.hook, self.size = sae, sae.hook, sae.d_sae
        self.through_final_norm = sae.hook != "ln_final"

    def values(self, act: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        return sae.encode(sae.read(act).to(sae.W_enc.device).float())

    def writes(self, model: Model, features: list[int]) -> tuple[torch.Tensor | None, str]:
        sae = self.sae
        direction = sae.W_dec[features].detach().float()
        if sae.uses_k and sae.cfg.rescale_acts_by_decoder_norm:
            direction = direction / sae.W_dec[features].norm(dim=-1, keepdim=True).clamp_min(1e-12)
        spec = model.hook_spec(sae.hook)
        if spec.layout == "resid":
            return direction, ""
        if spec.site == "mlp.post":
            write = direction @ model.weights.W_out(spec.layer).detach().float()
            post = "post_mlp_norm"
        elif spec.site == "attn.z":
            weights = model.output_weights(spec.layer).detach().float()  # [head, d_head, d_model]
            if sae.cfg.hook_head_index is not None:
                write = direction @ weights[sae.cfg.hook_head_index]
            else:
                write = torch.einsum("fhd,hdm->fm", direction.view(len(features), *weights.shape[:2]), weights)
            post = "post_attn_norm"
        else:
            return None, f"Features at {spec.site} have no direct path to the logits, so no token lists are shown."
        if getattr(model.arch, post) is None:  # no norm between the block's output and the residual stream
            return write, ""
        return write * model.weights.norm(post, spec.layer).weight.to(write.device), POST_NORM_NOTE

    def check(self, feature: int) -> None:
        if not 0 <= feature < self.size:
            raise InputError(f"feature {feature} is out of range for this SAE (valid: 0..{self.size - 1})")


class TranscoderBasis(FeatureBasis):
    """A transcoder's features at its input hook: its encoder's output, each writing its decoder row into the
    residual stream (the transcoder predicts ``mlp_out``, which the block adds to the stream as it is)."""

    signed = False

    def __init__(self, transcoder: Transcoder) -> None:
        self.transcoder, self.hook, self.size = transcoder, transcoder.hook, transcoder.d_sae

    def values(self, act: torch.Tensor) -> torch.Tensor:
        transcoder = self.transcoder
        return transcoder.encode(act.to(transcoder.W_enc.device).float())

    def writes(self, model: Model, features: list[int]) -> tuple[torch.Tensor | None, str]:
        output = self.transcoder.hook_out
        if output is not None and model.hook_spec(output).site != "mlp_out":
            return None, f"This transcoder predicts {output}, not a residual write, so no token lists are shown."
        return self.transcoder.W_dec[features].detach().float(), ""

    def check(self, feature: int) -> None:
        if not 0 <= feature < self.size:
            raise InputError(f"feature {feature} is out of range for this transcoder (valid: 0..{self.size - 1})")


FeatureDictionary = SAE | Transcoder  # what the dashboards, labels and the atlas read features of


def basis_of(source: FeatureDictionary | FeatureBasis) -> FeatureBasis:
    """A basis as given, or a dictionary's features (an SAE's or a transcoder's)."""
    if isinstance(source, FeatureBasis):
        return source
    return TranscoderBasis(source) if isinstance(source, Transcoder) else DictionaryBasis(source)


def token_effects(
    model: Model,
    basis: FeatureBasis,
    features: Sequence[int],
    top: int,
    chunk: int = 256,
    *,
    allowed: torch.Tensor | None = None,
) -> tuple[list[list[TokenEffect]], list[list[TokenEffect]], str]:
    """Per feature, the ``top`` tokens whose logits one unit of it raises and lowers most directly (among
    ``allowed`` tokens, bool [vocab], when given), and the basis's note on how to read them."""
    writes, note = basis.writes(model, list(features))
    if writes is None:
        return [[] for _ in features], [[] for _ in features], note
    promotes, suppresses = [], []
    for start in range(0, writes.shape[0], chunk):
        rows = direct_token_effects(
            model, writes[start : start + chunk], top, through_final_norm=basis.through_final_norm, allowed=allowed
        )
        promotes += [up for up, _ in rows]
        suppresses += [down for _, down in rows]
    return promotes, suppresses, note


def direct_token_effects(
    model: Model,
    writes: torch.Tensor,
    k: int,
    *,
    through_final_norm: bool = True,
    allowed: torch.Tensor | None = None,
) -> list[tuple[list[TokenEffect], list[TokenEffect]]]:
    """Per row of ``writes`` [n, d_model] (what one unit adds to the residual stream), the ``k`` tokens whose
    logits it raises and lowers most directly: through the final norm's weight (centred for LayerNorm;
    its positive, stream-wide scale left out, so the ranking is exact) and the unembedding.
    ``through_final_norm=False`` for writes already past the final norm (``ln_final``). ``allowed`` (bool
    [vocab]) keeps the lists to those tokens, e.g. the ones a corpus uses (a 262k multilingual vocabulary
    otherwise fills them with rare tokens of other languages)."""
    direction = writes.float()
    if through_final_norm:
        final = model.weights.final_norm()
        if final.centre:  # LayerNorm centres its input: centre the write, then weight it
            direction = direction - direction.mean(-1, keepdim=True)
        direction = direction * final.weight.to(direction.device)
    unembed = model.weights.W_U().detach().float()
    with torch.inference_mode():
        effect = direction.to(unembed.device) @ unembed  # [n, vocab]
    ids = torch.arange(effect.shape[-1])  # the vocabulary id of each column
    if allowed is not None:
        keep = torch.zeros(effect.shape[-1], dtype=torch.bool)
        keep[: len(allowed)] = allowed.cpu()[: effect.shape[-1]]
        effect, ids = effect[:, keep.to(effect.device)], ids[keep]
    k = min(k, effect.shape[-1])
    up, down = torch.topk(effect, k, dim=-1), torch.topk(-effect, k, dim=-1)

    def tokens(values: torch.Tensor, columns: torch.Tensor, sign: int) -> list[TokenEffect]:
        vocab_ids = ids[columns.cpu()].tolist()
        return [
            TokenEffect(model.tokenizer.decode([i]), i, sign * v)
            for v, i in zip(values.tolist(), vocab_ids, strict=True)
        ]

    return [
        (tokens(uv, ui, 1), tokens(dv, di, -1))
        for uv, ui, dv, di in zip(up.values, up.indices, down.values, down.indices, strict=True)
    ]
