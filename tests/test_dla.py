"""Direct logit attribution: shares add up to the logit, each share is the frozen-scale effect of removing
the component, neurons add up to their MLP, and per-head shares match TransformerLens's TransformerBridge."""

from __future__ import annotations

import pytest
import torch

import glasslab as gl
from glasslab.errors import InputError
from glasslab.methods.attribute.dla import (
    effective_direction,
    logit_attribution,
    neuron_effects,
    unembed_direction,
)
from glasslab.model.norms import norm_params

PROMPT = "the cat sat on the"
TARGET, VERSUS = " mat", " dog"


def pre_cap_logits(model: gl.Model, run: gl.Run, position: int) -> torch.Tensor:
    """The model's own final norm output through its own unembedding module: logits before soft-capping."""
    return model.module(model.arch.unembed)(run.cache["ln_final"][0, position]).float()


def frozen_scale_removal(model: gl.Model, tokens, position: int, removed: torch.Tensor, target: int, versus: int):
    """How much the pre-cap logit difference drops when ``removed`` leaves the final residual at ``position``,
    with the final norm's scale held at its clean value.

    Two real runs (an ``Add`` on the last block's output), the model's own final norm and unembedding. The
    norm's output minus its bias is ``scale(x) * g(x)`` with ``g`` linear, so the frozen-scale value of the
    edited run is its (logit - constant) times ``scale(clean) / scale(edited)``.
    """
    last = f"blocks.{model.n_layers - 1}.resid_post"
    unembed = model.module(model.arch.unembed).weight.float()
    direction = unembed[target] - unembed[versus]
    norm = model.module(model.arch.final_norm)

    def value(interventions):
        run = model.run(tokens, cache=[last, "ln_final"], logits=False, interventions=interventions)
        x = run.cache[last][0, position].float()
        out = run.cache["ln_final"][0, position].float()
        if isinstance(norm, torch.nn.LayerNorm):
            out = out - norm.bias.float()
            scale = torch.rsqrt(x.var(unbiased=False) + norm.eps)
        else:
            eps = getattr(norm, "eps", None) or norm.variance_epsilon
            scale = torch.rsqrt(x.pow(2).mean() + eps)
        return float(out @ direction), float(scale)

    clean, clean_scale = value([])
    edited, edited_scale = value([gl.Add(last, vector=removed, scale=-1.0, position=position)])
    return clean - edited * clean_scale / edited_scale


def test_shares_add_up_to_the_logit(family_model):
    model = family_model
    result = logit_attribution(model, PROMPT, target=TARGET, versus=VERSUS, top_neurons=5)
    run = model.run(PROMPT, cache=["ln_final"])
    t, v = result.target_id, result.versus_id
    pre = pre_cap_logits(model, run, -1)
    expected = float(pre[t] - pre[v])
    scale = max(1.0, abs(expected))
    assert result.normalised_logit == pytest.approx(expected, abs=1e-5 * scale)
    assert result.total == pytest.approx(expected, abs=2e-5 * scale)
    # The heads (plus any output bias) add up to each layer's attention share.
    for layer, heads in enumerate(result.heads):
        bias = result.attn_bias[layer] if result.attn_bias else 0.0
        assert sum(heads) + bias == pytest.approx(result.attn[layer], abs=1e-5 * scale)
    assert result.cumulative[-1] == pytest.approx(result.total, abs=1e-6 * scale)
    assert result.lens[-1] == pytest.approx(expected, abs=1e-5 * scale)  # the last residual decodes to the logit
    cap = getattr(model.config, "final_logit_softcapping", None)
    final = run.logits[0, -1].float()
    model_value = float(final[t] - final[v])
    assert result.logit == pytest.approx(model_value, abs=1e-5)
    if cap:  # Gemma 2: the decomposed value is before the soft-cap
        assert result.softcapped
        torch.testing.assert_close(final, cap * torch.tanh(pre / cap), rtol=1e-5, atol=1e-6)
    else:
        assert result.normalised_logit == pytest.approx(model_value, abs=1e-5 * scale)
    assert ("final norm bias" in result.constants) == isinstance(
        model.module(model.arch.final_norm), torch.nn.LayerNorm
    )


def test_head_share_is_the_frozen_scale_effect_of_removing_its_write(family_model):
    model = family_model
    result = logit_attribution(model, PROMPT, target=TARGET, versus=VERSUS, top_neurons=0)
    tokens = model.to_tokens(PROMPT)
    position = tokens.shape[1] - 1
    run = model.run(tokens, cache=["blocks.*.attn.head_out", "blocks.0.resid_pre"], logits=False)
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            write = run.cache[f"blocks.{layer}.attn.head_out"][0, position, head]
            effect = frozen_scale_removal(model, tokens, position, write, result.target_id, result.versus_id)
            assert result.heads[layer][head] == pytest.approx(effect, abs=2e-6), (layer, head)
    embed = run.cache["blocks.0.resid_pre"][0, position]
    effect = frozen_scale_removal(model, tokens, position, embed, result.target_id, result.versus_id)
    assert result.embed == pytest.approx(effect, abs=2e-6)


def test_neurons_add_up_to_their_mlp_share(family_model):
    """Every neuron's share, plus the output projection's bias, is the layer's MLP share (post-norms included)."""
    model = family_model
    result = logit_attribution(model, PROMPT, target=TARGET, top_neurons=3)
    run = model.run(PROMPT, cache=["blocks.*.mlp.post", f"blocks.{model.n_layers - 1}.resid_post"], logits=False)
    params = norm_params(model.module(model.arch.final_norm))
    x = run.cache[f"blocks.{model.n_layers - 1}.resid_post"][0, -1]
    u = effective_direction(params, params.scale(x), unembed_direction(model, result.target_id, None)[0])
    shares = []
    for layer in range(model.n_layers):
        _, contributions = neuron_effects(model, layer, run.cache[f"blocks.{layer}.mlp.post"][0, -1], u)
        shares.append(contributions)
        bias = getattr(model.block_module(layer, model.arch.mlp_out_proj), "bias", None)
        bias_share = 0.0
        if bias is not None and model.arch.post_mlp_norm is None:
            bias_share = float(bias.float() @ u)
        assert float(contributions.sum()) + bias_share == pytest.approx(result.mlp[layer], abs=1e-5)
    flat = torch.stack(shares).flatten()
    best = torch.topk(flat.abs(), 3).indices
    assert [n.contribution for n in result.top_neurons] == pytest.approx(flat[best].tolist(), abs=1e-7)


def test_bad_inputs_are_one_line_errors(family_model):
    with pytest.raises(InputError, match="position 9 is out of range"):
        logit_attribution(family_model, PROMPT, target=TARGET, position=9)
    with pytest.raises(InputError, match="target is empty"):
        logit_attribution(family_model, PROMPT, target="")


def test_figure_and_json(family_model):
    result = logit_attribution(family_model, PROMPT, target=TARGET, versus=VERSUS)
    data = result.to_dict()
    assert data["kind"] == "logit_attribution" and data["model"] == family_model.name
    assert abs(data["error"]) < 1e-4
    html = result._repr_html_()
    assert "each head" in html and "What it does not prove" in html


@pytest.mark.slow
def test_default_model_shares_add_up(default_model):
    for versus in (None, " London"):
        result = logit_attribution(default_model, "The capital of France is", target=" Paris", versus=versus)
        assert abs(result.error) < 1e-4 * max(1.0, abs(result.normalised_logit))
        assert result.logit == pytest.approx(result.normalised_logit, abs=1e-4)  # Gemma 3: no final soft-cap


# -- peer: TransformerLens's TransformerBridge --------------------------------------------------------

PEER_PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.mark.slow
def test_head_shares_equal_transformer_bridge_by_hand(default_model):
    """Per-head DLA from the bridge's cached ``z``, the HF output projection, the post-attention norm and the
    final norm (both Gemma RMSNorms with weight 1 + w) linearised by hand at their frozen scales."""
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from transformers import AutoModelForCausalLM

    own_copy = AutoModelForCausalLM.from_pretrained(default_model.stored_at, dtype=torch.float32)
    own_copy.requires_grad_(False)
    bridge = bridge_module.TransformerBridge.boot_transformers(
        str(default_model.stored_at), hf_model=own_copy, tokenizer=default_model.tokenizer, device="cpu"
    )
    tokens = default_model.to_tokens(PEER_PROMPT)
    last = default_model.n_layers - 1
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(default_model.n_layers)]
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(tokens, names_filter=[*names, f"blocks.{last}.hook_resid_post"])
    config = own_copy.config
    eps = config.rms_norm_eps
    layers = own_copy.model.layers
    target, versus = " Mary", " John"
    ids = [default_model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (target, versus)]
    direction = own_copy.lm_head.weight[ids[0]].float() - own_copy.lm_head.weight[ids[1]].float()
    x = cache[f"blocks.{last}.hook_resid_post"][0, -1].float()
    final_scale = torch.rsqrt(x.pow(2).mean() + eps)
    final_weight = 1.0 + own_copy.model.norm.weight.float()
    ours = logit_attribution(default_model, PEER_PROMPT, target=target, versus=versus, top_neurons=0)
    n_heads, d_head = config.num_attention_heads, config.head_dim
    for layer in range(default_model.n_layers):
        theirs = _bridge_head_shares(cache[names[layer]][0, -1], layers[layer], n_heads, d_head, eps)
        theirs = (theirs * final_scale * final_weight) @ direction
        largest = max(1.0, float(theirs.abs().max()))
        torch.testing.assert_close(
            torch.tensor(ours.heads[layer]), theirs, rtol=1e-3, atol=1e-4 * largest, msg=f"layer {layer}"
        )


def _bridge_head_shares(z: torch.Tensor, block, n_heads: int, d_head: int, eps: float) -> torch.Tensor:
    """[head, d_model]: each head's share of attn_out from the bridge's z, by hand (Gemma post-attention norm)."""
    z = z.float()  # [head, d_head]
    w_o = block.self_attn.o_proj.weight.float()  # [d_model, n_heads * d_head]
    per_head = torch.stack([z[h] @ w_o[:, h * d_head : (h + 1) * d_head].T for h in range(n_heads)])
    post_scale = torch.rsqrt(per_head.sum(0).pow(2).mean() + eps)
    return per_head * post_scale * (1.0 + block.post_attention_layernorm.weight.float())


def _bridge_head_shares(z: torch.Tensor, block, n_heads: int, d_head: int, eps: float) -> torch.Tensor:
    """[head, d_model]: each head's share of attn_out from the bridge's z, by hand (Gemma post-attention norm)."""
    z = z.float()  # [head, d_head]
    w_o = block.self_attn.o_proj.weight.float()  # [d_model, n_heads * d_head]
    per_head = torch.stack([z[h] @ w_o[:, h * d_head : (h + 1) * d_head].T for h in range(n_heads)])
    post_scale = torch.rsqrt(per_head.sum(0).pow(2).mean() + eps)
    return per_head * post_scale * (1.0 + block.post_attention_layernorm.weight.float())
