"""Splicing an SAE into a model: exact with no edit, edits equal the formula, generation equals a forward
pass with the same clamp, and clamping a feature up moves the logits along its decoder direction."""

from __future__ import annotations

import pytest
import torch

from glasslab.errors import InputError
from glasslab.interventions import Replace
from glasslab.interventions.splice import FeatureEdit, FeatureRecorder, SAESplice
from glasslab.sae import SAE, SAEConfig
from tests.tiny import tiny_model
from tests.tolerance import assert_greedy

PROMPT = "the cat sat on the mat and the dog ran to the park"


def random_sae(model, hook: str = "blocks.1.resid_post", d_sae: int = 64, architecture: str = "standard", **cfg):
    """A random SAE that fits ``model`` at ``hook``: encoder and decoder scaled so several features fire."""
    from glasslab.dictionaries.fit import hook_width

    d_in = hook_width(model, hook)
    config = SAEConfig(architecture, d_in, d_sae, hook, model_name=model.name, **cfg)
    sae = SAE(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) / d_sae**0.5)
        if hasattr(sae, "b_enc"):
            sae.b_enc.copy_(torch.randn(d_sae, generator=generator) * 0.1)
        sae.b_dec.copy_(torch.randn(d_in, generator=generator) * 0.1)
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=generator) * 0.1)
    return sae


def test_splice_without_edits_leaves_every_family_exactly_unchanged(family_model):
    model = family_model
    sae = random_sae(model)
    clean = model.run(PROMPT).logits
    spliced = model.run(PROMPT, interventions=[SAESplice(sae)]).logits
    assert torch.equal(spliced, clean)
    # An edit that changes no value goes through the whole edit path and is still a no-op.
    edited = model.run(PROMPT, interventions=[SAESplice(sae, [FeatureEdit(range(64), "scale", 1.0)])])
    torch.testing.assert_close(edited.logits, clean, rtol=1e-5, atol=1e-6)
    # Without the error term the SAE's reconstruction alone stands in: a random SAE changes the output.
    reconstructed = model.run(PROMPT, interventions=[SAESplice(sae, keep_error=False)]).logits
    assert not torch.allclose(reconstructed, clean, atol=1e-3)


@pytest.mark.parametrize(
    ("architecture", "cfg"), [("standard", {}), ("topk", {"k": 4}), ("jumprelu", {}), ("gated", {})]
)
def test_edit_equals_decode_of_edited_features_plus_error(architecture, cfg):
    model = tiny_model("llama")
    sae = random_sae(model, architecture=architecture, **cfg)
    hook = sae.hook
    x = model.run(PROMPT, cache=[hook]).cache[hook]
    features = sae.encode(x)
    feature = int(features[0, 4].argmax())
    edit = FeatureEdit(feature, "scale", 3.0, position=[4, -1])
    edited = features.clone()
    edited[0, [4, x.shape[1] - 1], feature] *= 3.0
    expected = sae.decode(edited, like=x) + sae.error(x)

    seen = {}
    watch = Replace(hook, fn=lambda act: seen.update(act=act) or act)  # records what the splice left
    model.run(PROMPT, interventions=[SAESplice(sae, [edit]), watch], logits=False)
    torch.testing.assert_close(seen["act"], expected, rtol=1e-5, atol=1e-5)
    untouched = [p for p in range(x.shape[1]) if p not in (4, x.shape[1] - 1)]
    assert torch.equal(seen["act"][0, untouched], x[0, untouched])


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_generation_with_a_clamp_equals_a_forward_pass_with_the_same_clamp(family):
    model = tiny_model(family)
    sae = random_sae(model, hook="blocks.0.resid_post")
    prompt = "the cat sat on"
    n_prompt = model.to_tokens(prompt).shape[1]
    # Absolute positions: one in the prompt, the prompt's last, and two generated ones. (A negative position
    # counts from the end of the prompt, which in the replay below would be the end of the longer text.)
    at = [1, n_prompt - 1, n_prompt + 1, n_prompt + 3]
    edits = [FeatureEdit([5, 9], "value", 8.0, position=at)]
    base = model.generate(prompt, max_new_tokens=6)
    recorder = FeatureRecorder([5, 9])
    clamped = model.generate(prompt, max_new_tokens=6, interventions=[SAESplice(sae, edits, recorder=recorder)])
    assert clamped.new_token_ids != base.new_token_ids, "the clamp should change this generation"

    ids = torch.tensor([model.to_tokens(prompt)[0].tolist() + clamped.new_token_ids])
    replay = FeatureRecorder([5, 9])
    run = model.run(ids, interventions=[SAESplice(sae, edits, recorder=replay)])
    assert_greedy(run.logits[0, n_prompt - 1 : -1], clamped.new_token_ids)  # another route: up to rounding
    generated = recorder.values()  # every position the model read: the prompt and all new tokens but the last
    torch.testing.assert_close(generated, replay.values()[:, : generated.shape[1]], rtol=1e-4, atol=1e-5)
    assert torch.equal(generated[:, at], torch.full((2, 4), 8.0))  # set, not computed: exact


def test_clamping_a_feature_up_moves_the_logits_along_its_decoder_direction():
    model = tiny_model("gpt2")
    last = model.n_layers - 1
    sae = random_sae(model, hook=f"blocks.{last}.resid_post")
    hook = sae.hook
    x = model.run(PROMPT, cache=[hook]).cache[hook][0, -1]
    feature = 7
    current = float(sae.encode(x)[feature])
    value = current + 1.0
    clamped = model.run(PROMPT, interventions=[SAESplice(sae, [FeatureEdit(feature, "value", value, position=-1)])])
    base = model.run(PROMPT)
    change = clamped.logits[0, -1] - base.logits[0, -1]
    # Exact: the residual moved by (value - current) * W_dec[feature]; the model's own unembedding follows.
    with torch.inference_mode():
        expected = model.unembed(x + (value - current) * sae.W_dec[feature]) - model.unembed(x)
    torch.testing.assert_close(change, expected, rtol=1e-4, atol=1e-5)
    # Direction: the change lines up with the decoder direction read through the final norm's weight and W_U.
    from glasslab.model.norms import norm_params

    final = norm_params(model.module(model.arch.final_norm))
    direction = sae.W_dec[feature] - sae.W_dec[feature].mean()
    along = model.module(model.arch.unembed).weight.float() @ (direction * final.weight)
    cosine = torch.nn.functional.cosine_similarity(change - change.mean(), along - along.mean(), dim=0)
    assert cosine > 0.8  # not 1: the final norm's scale moves too


def test_bad_edits_fail_with_one_line():
    model = tiny_model("gpt2")
    sae = random_sae(model)
    for bad, message in [
        (lambda: model.run(PROMPT, interventions=[SAESplice(sae, [FeatureEdit(64)])]), "out of range"),
        (lambda: model.run(PROMPT, interventions=[SAESplice(sae, [FeatureEdit(1, position=99)])]), "position 99"),
        (lambda: FeatureEdit(1, "double"), "unknown"),
        (lambda: FeatureEdit([], "zero"), "at least one"),
        (lambda: FeatureEdit(1, "value", float("nan")), "finite"),
    ]:
        with pytest.raises(InputError, match=message) as info:
            bad()
        assert "\n" not in str(info.value)
    other = random_sae(tiny_model("llama"), hook="blocks.1.mlp.post")
    other.cfg.hook = "blocks.1.resid_post"  # a width that does not fit gpt2's residual stream
    with pytest.raises(InputError, match="another model"):
        model.run(PROMPT, interventions=[SAESplice(other, [FeatureEdit(1)])])


def test_splice_in_a_with_block_is_scoped():
    model = tiny_model("gpt2")
    sae = random_sae(model)
    clean = model.run(PROMPT).logits
    with model.intervene(SAESplice(sae, [FeatureEdit(1, "value", 9.0)])):
        inside = model.run(PROMPT).logits
    assert not torch.equal(inside, clean) and torch.equal(model.run(PROMPT).logits, clean)
