"""Second route for caches: TransformerLens's TransformerBridge on the same weights.

The bridge wraps the Hugging Face modules with its own hooks; its raw (non-compatibility) caches are
the model's true intermediate values, so glasslab's canonical hooks must equal them.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPT = "When Mary and John went to the store, John gave a drink to"

# glasslab name -> TransformerBridge name (per block)
SAME_VALUES = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "attn.pattern": "attn.hook_pattern",
    "attn.v": "attn.hook_v",
    "attn.z": "attn.hook_z",
    "mlp.post": "mlp.hook_post",
}


@pytest.fixture(scope="module")
def bridge_cache(default_model):
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from transformers import AutoModelForCausalLM

    # The bridge rewires the model it boots from, so it gets its own copy of the weights.
    own_copy = AutoModelForCausalLM.from_pretrained(default_model.stored_at, dtype=torch.float32)
    bridge = bridge_module.TransformerBridge.boot_transformers(
        str(default_model.stored_at), hf_model=own_copy, tokenizer=default_model.tokenizer, device="cpu"
    )
    tokens = default_model.to_tokens(PROMPT)
    with torch.inference_mode():
        logits, cache = bridge.run_with_cache(tokens)
    return tokens, logits, cache


def test_bridge_sees_the_same_tokens(default_model, bridge_cache):
    tokens, _, _ = bridge_cache
    assert tokens[0, 0].item() == default_model.tokenizer.bos_token_id


@pytest.mark.parametrize("layer", [0, 5, 11, 17])
def test_canonical_hooks_equal_transformer_bridge(default_model, bridge_cache, layer):
    tokens, bridge_logits, cache = bridge_cache
    run = default_model.run(tokens, cache=[f"blocks.{layer}.*"])
    for ours, theirs in SAME_VALUES.items():
        mine = run.cache[f"blocks.{layer}.{ours}"]
        reference = cache[f"blocks.{layer}.{theirs}"]
        scale = reference.abs().max().item()
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5 * scale, msg=f"{ours} vs {theirs}")
    torch.testing.assert_close(run.logits, bridge_logits, rtol=1e-4, atol=1e-4)


def test_rotated_queries_and_keys_equal_transformer_bridge(default_model, bridge_cache):
    tokens, _, cache = bridge_cache
    run = default_model.run(tokens, cache=["blocks.3.attn.q", "blocks.3.attn.k"])
    for ours, theirs in (("q", "attn.hook_rot_q"), ("k", "attn.hook_rot_k")):
        reference = cache[f"blocks.3.{theirs}"]
        mine = run.cache[f"blocks.3.attn.{ours}"]
        if reference.shape != mine.shape:  # the bridge may keep [batch, head, pos, d_head]
            reference = reference.transpose(1, 2)
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())
