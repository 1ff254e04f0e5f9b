"""Neurons: rankings at a position against brute force and a causal check, top contexts against a full
scan of a small corpus, and the promoted tokens against the model's own norms."""

from __future__ import annotations

import random

import pytest
import torch

import glasslab as gl
from glasslab.data import load_corpus, packed_sequences
from glasslab.errors import InputError
from glasslab.methods.observe.neurons import neuron_profile, top_neurons

from .test_dla import frozen_scale_removal
from .tiny import WORDS, tiny_model

PROMPT = "the cat sat on the"


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "words.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(8)))
    return path


def out_weight_row(model: gl.Model, layer: int, neuron: int) -> torch.Tensor:
    module = model.block_module(layer, model.arch.mlp_out_proj)
    return (module.weight[neuron] if model.arch.out_proj_layout == "conv1d" else module.weight[:, neuron]).float()


def test_most_active_is_the_largest_activation(family_model):
    model = family_model
    result = top_neurons(model, PROMPT, top=5)
    run = model.run(PROMPT, cache=["blocks.*.mlp.post"], logits=False)
    acts = torch.stack([run.cache[f"blocks.{layer}.mlp.post"][0, -1] for layer in range(model.n_layers)])
    order = torch.argsort(acts.abs().flatten(), descending=True)[:5]
    assert [(s.layer, s.neuron) for s in result.most_active] == [divmod(int(i), model.d_mlp) for i in order]
    assert [s.activation for s in result.most_active] == [float(acts.flatten()[i]) for i in order]
    one_layer = top_neurons(model, PROMPT, top=3, layer=1)
    assert {s.layer for s in one_layer.most_active} == {1} and one_layer.most_relevant == []


def test_neuron_share_is_the_frozen_scale_effect_of_removing_its_write(family_model):
    """Take the neuron's write (by hand, through the post-MLP norm at its frozen scale in Gemma 2/3) out of
    the final residual; the frozen-scale logit change equals the neuron's share."""
    model = family_model
    result = top_neurons(model, PROMPT, top=4, target=" mat", versus=" dog")
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" mat", " dog")]
    tokens = model.to_tokens(PROMPT)
    position = tokens.shape[1] - 1
    run = model.run(tokens, cache=["blocks.*.mlp.post"], logits=False)
    for score in result.most_relevant:
        post = run.cache[f"blocks.{score.layer}.mlp.post"][0, position].float()
        write = post[score.neuron] * out_weight_row(model, score.layer, score.neuron)
        if model.arch.post_mlp_norm:  # Gemma RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w)
            module = model.block_module(score.layer, model.arch.mlp_out_proj)
            total = module(run.cache[f"blocks.{score.layer}.mlp.post"][0, position]).float()
            norm = model.block_module(score.layer, model.arch.post_mlp_norm)
            write = write * torch.rsqrt(total.pow(2).mean() + norm.eps) * (1.0 + norm.weight.float())
        effect = frozen_scale_removal(model, tokens, position, write, *ids)
        assert score.contribution == pytest.approx(effect, abs=2e-6), (score.layer, score.neuron)
    assert [abs(s.contribution) for s in result.most_relevant] == sorted(
        (abs(s.contribution) for s in result.most_relevant), reverse=True
    )


@pytest.mark.parametrize("family", ["gpt2", "gemma3", "llama"])
def test_top_contexts_equal_a_full_scan(family, corpus_file):
    model = tiny_model(family)
    layer, neuron, k, window = 1, 5, 4, 3
    profile = neuron_profile(
        model, layer, neuron, corpus=str(corpus_file), sequences=11, seq_len=12, batch_size=4, k=k, window=window
    )
    sequences = torch.stack(list(packed_sequences(model, load_corpus(str(corpus_file)), 12, limit=11)))
    acts = model.run(sequences, cache=[f"blocks.{layer}.mlp.post"], logits=False).cache[f"blocks.{layer}.mlp.post"]
    acts = acts[..., neuron].float()
    per_sequence = acts[:, 1:].max(dim=1).values  # BOS skipped
    assert profile.sequences == 11 and profile.positions == 11 * 11
    assert [c.activation for c in profile.contexts] == torch.topk(per_sequence, k).values.tolist()
    assert profile.max_activation == float(acts[:, 1:].max())
    assert profile.mean_activation == pytest.approx(float(acts[:, 1:].mean()), abs=1e-6)
    for c in profile.contexts:
        assert float(acts[c.sequence, c.position]) == c.activation
        start = max(0, c.position - window)
        ids = sequences[c.sequence, start : c.position + window + 1].tolist()
        assert c.tokens == [model.tokenizer.decode([i]) for i in ids]
        assert c.activations[c.centre] == c.activation
        assert c.activations == acts[c.sequence, start : c.position + window + 1].tolist()


def test_promoted_tokens_follow_the_models_own_norms(family_model):
    """Ranking by the neuron's output weights through the model's own norm modules (a positive rescaling of
    the linear path: same order)."""
    model = family_model
    layer, neuron = 1, 3
    profile = neuron_profile(model, layer, neuron, corpus="builtin", sequences=1, seq_len=8, top_tokens=5)
    write = out_weight_row(model, layer, neuron).detach()
    with torch.inference_mode():
        if model.arch.post_mlp_norm:
            write = model.block_module(layer, model.arch.post_mlp_norm)(write)
        final = model.module(model.arch.final_norm)
        normed = final(write).float()
        if isinstance(final, torch.nn.LayerNorm):
            normed = normed - final.bias.float()
        logits = model.module(model.arch.unembed).weight.float() @ normed
    assert [t.token_id for t in profile.promotes] == torch.topk(logits, 5).indices.tolist()
    assert [t.token_id for t in profile.suppresses] == torch.topk(-logits, 5).indices.tolist()
    assert profile.post_norm == (model.arch.post_mlp_norm is not None)


def test_bad_inputs_are_one_line_errors(tmp_path):
    model = tiny_model("llama")
    short = tmp_path / "short.txt"
    short.write_text("the cat sat")
    with pytest.raises(InputError, match="layer 7 is out of range"):
        neuron_profile(model, 7, 0)
    with pytest.raises(InputError, match="neuron 64 is out of range"):
        neuron_profile(model, 0, 64)
    with pytest.raises(InputError, match="needs --target"):
        top_neurons(model, PROMPT, versus=" dog")
    with pytest.raises(InputError, match="too little text"):
        neuron_profile(model, 0, 0, corpus=str(short), sequences=1, seq_len=64)


def test_json_and_figures(corpus_file):
    model = tiny_model("gpt2")
    profile = neuron_profile(model, 0, 1, corpus=str(corpus_file), sequences=4, seq_len=10, k=2)
    data = profile.to_dict()
    assert data["kind"] == "neuron_profile" and len(data["contexts"]) == 2
    assert "top-activating contexts" in profile._repr_html_()
    result = top_neurons(model, PROMPT, target=" mat")
    assert result.to_dict()["kind"] == "neurons" and "largest direct shares" in result._repr_html_()


@pytest.mark.slow
def test_default_model_neuron_scan(default_model):
    profile = neuron_profile(default_model, 3, 1057, sequences=8, seq_len=32, batch_size=8, k=3)
    assert len(profile.contexts) == 3 and profile.contexts[0].activation == profile.max_activation
    assert all(c.tokens[c.centre] for c in profile.contexts)
