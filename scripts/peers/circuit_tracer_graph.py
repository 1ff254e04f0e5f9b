"""Write the circuit-tracer peer fixture (tests/data/circuit_tracer) for tests/test_peer_circuit_tracer.py.

It builds a tiny random GPT-2 (3 layers, d_model 48, a word-level vocabulary of 60 so that d_vocab != d_model:
circuit-tracer guesses W_U's orientation from its shape) and two sets of random ReLU per-layer transcoders from
``mlp.hook_in`` (the MLP input after ln_2, affine included) to ``hook_mlp_out``, one without and one with a skip
connection, runs circuit-tracer's ``attribute``, ``compute_graph_scores`` and ``prune_graph`` on one prompt with
glasslab's default settings, and writes, without pickle:

    model/                     the GPT-2 as a Hugging Face folder (config.json, model.safetensors, tokenizer files)
    transcoders.safetensors    "<variant>.layer<L>.<W_enc|b_enc|W_dec|b_dec|W_skip>" in circuit-tracer's layout:
                               W_enc [d_transcoder, d_model], W_dec [d_transcoder, d_model], skip = x @ W_skip.T
    graphs.safetensors         "<variant>.<name>": circuit-tracer's outputs (adjacency, active features and their
                               values, logit targets and probabilities, pruned node mask and kept edges, input
                               tokens, the model's last-position logits)
    graphs.json                settings, node labels, scores and versions

It runs in its own virtual environment: circuit-tracer 0.5.0 pins transformers<=4.57.3 and huggingface-hub<1.0,
which glasslab's environment cannot share. Make it and run this script from the repository root with:

    python3 -m venv /tmp/ctvenv
    /tmp/ctvenv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/ctvenv/bin/pip install circuit-tracer==0.5.0 transformer-lens==3.2.1 transformers==4.57.3
    /tmp/ctvenv/bin/python scripts/peers/circuit_tracer_graph.py [output folder]

As a check on the peer run itself, every adjacency row is recomputed by plain autograd through a
TransformerLens model with frozen attention patterns and norm scales; the script stops if they disagree.
"""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"  # prove that nothing is fetched from a hub
os.environ["WANDB_MODE"] = "disabled"

import json  # noqa: E402
import sys  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.graph import compute_graph_scores, prune_graph  # noqa: E402
from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights  # noqa: E402
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "data" / "circuit_tracer"
SEED = 0
N_LAYERS, D_MODEL, N_HEADS, D_MLP, N_CTX, D_TRANSCODER = 3, 48, 4, 96, 16, 64
WORDS = [f"w{i}" for i in range(59)]
BOS = "<|endoftext|>"
PROMPT = "w4 w16 w8 w22 w3 w10 w29 w1"  # ids 5 17 9 23 4 11 30 2 after BOS (id 0)
INPUT_HOOK, OUTPUT_HOOK = "mlp.hook_in", "hook_mlp_out"
# glasslab's defaults (attribution_graph's max_logits, logit_probability, node_threshold, edge_threshold)
MAX_LOGITS, LOGIT_PROBABILITY, NODE_THRESHOLD, EDGE_THRESHOLD = 10, 0.95, 0.8, 0.98
VARIANTS = (("noskip", False, 10), ("skip", True, 11))  # name, skip connection, transcoder seed


def build_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer saved to disk: TransformerLens and glasslab both reload it from the folder."""
    vocab = {BOS: 0} | {w: i + 1 for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=BOS))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=BOS, unk_token=BOS, pad_token=BOS)
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def build_hf_model(vocab_size: int) -> GPT2LMHeadModel:
    """Random GPT-2 with non-trivial LayerNorm affines and biases (HF's init leaves them 1 and 0)."""
    torch.manual_seed(SEED)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=N_CTX, n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS,
        n_inner=D_MLP, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(0.15 * torch.randn(param.shape, generator=gen))
    model.tie_weights()
    return model


def tl_config() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=N_LAYERS, d_model=D_MODEL, n_ctx=N_CTX, d_head=D_MODEL // N_HEADS, n_heads=N_HEADS,
        d_mlp=D_MLP, d_vocab=len(WORDS) + 1, act_fn="gelu_new", normalization_type="LN", eps=1e-5,
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        model_name="tiny-random-gpt2", device="cpu", dtype=torch.float32, tokenizer_prepends_bos=False,
    )  # fmt: skip


def tl_state_dict(hf_model: GPT2LMHeadModel, cfg: HookedTransformerConfig) -> dict[str, torch.Tensor]:
    """TransformerLens's own GPT-2 converter; GPT-2 has no unembedding bias."""
    state = {k: v.detach().clone() for k, v in convert_gpt2_weights(hf_model, cfg).items()}
    state["unembed.b_U"] = torch.zeros(cfg.d_vocab)
    return state


def random_transcoders(skip: bool, seed: int) -> TranscoderSet:
    """ReLU per-layer transcoders; b_enc is shifted so that a minority of the features fire."""
    gen = torch.Generator().manual_seed(seed)
    layers = {}
    for layer in range(N_LAYERS):
        tc = SingleLayerTranscoder(
            D_MODEL, D_TRANSCODER, F.relu, layer, skip_connection=skip, device=torch.device("cpu"), dtype=torch.float32
        )
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(D_TRANSCODER, D_MODEL, generator=gen) / D_MODEL**0.5)
            tc.b_enc.copy_(0.3 * torch.randn(D_TRANSCODER, generator=gen) - 1.4)
            tc.W_dec.copy_(0.2 * torch.randn(D_TRANSCODER, D_MODEL, generator=gen))
            tc.b_dec.copy_(0.1 * torch.randn(D_MODEL, generator=gen))
            if skip:
                tc.W_skip.copy_(0.1 * torch.randn(D_MODEL, D_MODEL, generator=gen))
        layers[layer] = tc
    return TranscoderSet(layers, feature_input_hook=INPUT_HOOK, feature_output_hook=OUTPUT_HOOK, scan="tiny-random")


def replacement_model(cfg, transcoders, tokenizer, state):
    """ReplacementModel.from_config wraps block.mlp and unembed, so weights are loaded under the new names."""
    model = ReplacementModel.from_config(cfg, transcoders, backend="transformerlens", tokenizer=tokenizer)
    own = model.state_dict()
    renamed = {}
    for key, value in state.items():
        if key in own:
            renamed[key] = value
        elif ".mlp." in key:
            renamed[key.replace(".mlp.", ".mlp.old_mlp.")] = value
        elif key.startswith("unembed."):
            renamed[key.replace("unembed.", "unembed.old_unembed.")] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    params = {name for name, _ in model.named_parameters() if not name.startswith("transcoders.")}
    assert not (set(missing) & params) and not unexpected, (set(missing) & params, unexpected)
    return model


def reference_adjacency(plain: HookedTransformer, transcoders: TranscoderSet, graph) -> torch.Tensor:
    """Every row again by plain autograd: frozen patterns and LN scales, MLP out = a @ W_dec + skip(x) + error.

    Edge (target t <- source s) = d(target scalar)/d(source leaf) . source vector, where a feature target's
    scalar is W_enc[f] . mlp_in (no b_enc, no ReLU) and a logit target's is (W_U[:, k] - mean_v W_U[:, v]) .
    ln_final_out[last]; sources are a_s * W_dec[s] (features), error vectors, and W_E[token] (not W_pos).
    """
    tokens = graph.input_tokens.cpu()
    n_pos, n_layers = len(tokens), plain.cfg.n_layers
    feats = graph.active_features.cpu()
    logit_ids = graph.logit_token_ids.cpu()
    _, cache = plain.run_with_cache(tokens[None])
    W_U = plain.W_U.detach()
    logit_dirs = (W_U[:, logit_ids] - W_U.mean(dim=1, keepdim=True)).T
    n_targets = len(feats) + len(logit_ids)
    acts, errors = [], []
    for layer, tc in enumerate(transcoders):
        ln2 = plain.blocks[layer].ln2
        x_in = cache[f"blocks.{layer}.ln2.hook_normalized"][0] * ln2.w + ln2.b
        a = tc.encode(x_in).detach()
        a[0] = 0  # circuit-tracer zeroes position 0 (the BOS) features and errors
        recon = a @ tc.W_dec + tc.b_dec + (tc.compute_skip(x_in) if transcoders.skip_connection else 0)
        err = (cache[f"blocks.{layer}.hook_mlp_out"][0] - recon).detach()
        err[0] = 0
        acts.append(a.expand(n_targets, -1, -1).clone().requires_grad_(True))
        errors.append(err.expand(n_targets, -1, -1).clone().requires_grad_(True))
    embed = cache["hook_embed"].detach().expand(n_targets, -1, -1).clone().requires_grad_(True)
    mlp_in: dict[int, torch.Tensor] = {}

    def freeze(value, hook):
        return cache[hook.name].expand_as(value)

    def keep_normalized(value, hook):
        layer = hook.layer()
        mlp_in[layer] = value * plain.blocks[layer].ln2.w + plain.blocks[layer].ln2.b
        return value

    def replace_mlp_out(value, hook):
        layer = hook.layer()
        tc = transcoders[layer]
        skip = tc.compute_skip(mlp_in[layer]) if transcoders.skip_connection else 0
        return acts[layer] @ tc.W_dec.detach() + tc.b_dec.detach() + skip + errors[layer]

    hooks = [("hook_embed", lambda v, hook: embed)]
    hooks += [(n, freeze) for n in cache if n.endswith(("hook_pattern", "hook_scale"))]
    hooks += [(f"blocks.{layer}.ln2.hook_normalized", keep_normalized) for layer in range(n_layers)]
    hooks += [(f"blocks.{layer}.hook_mlp_out", replace_mlp_out) for layer in range(n_layers)]
    for p in plain.parameters():
        p.requires_grad_(False)
    final: dict[str, torch.Tensor] = {}
    hooks.append(("ln_final.hook_normalized", lambda v, hook: final.setdefault("x", v)))
    with plain.hooks(fwd_hooks=hooks):
        plain(tokens[None].expand(n_targets, -1))
    scalars = [
        mlp_in[layer][row, pos] @ transcoders[layer].W_enc[feat].detach()
        for row, (layer, pos, feat) in enumerate(feats.tolist())
    ]
    last = final["x"][len(feats) :, -1] * plain.ln_final.w + plain.ln_final.b
    (torch.stack(scalars).sum() + (last * logit_dirs).sum()).backward()

    n_nodes = len(feats) + (n_layers + 1) * n_pos + len(logit_ids)
    adjacency = torch.zeros(n_nodes, n_nodes)
    target_rows = torch.cat([torch.arange(len(feats)), torch.arange(n_nodes - len(logit_ids), n_nodes)])
    columns = [acts[layer].grad[:, pos, feat] * acts[layer][0, pos, feat].detach() for layer, pos, feat in feats]
    adjacency[target_rows, : len(feats)] = torch.stack(columns, dim=1)
    for layer in range(n_layers):
        start = len(feats) + layer * n_pos
        adjacency[target_rows, start : start + n_pos] = (errors[layer].grad * errors[layer].detach()).sum(-1)
    start = len(feats) + n_layers * n_pos
    adjacency[target_rows, start : start + n_pos] = (embed.grad * plain.W_E[tokens].detach()).sum(-1)
    return adjacency


def node_labels(graph, n_layers: int) -> list[str]:
    """Node descriptions in circuit-tracer's node order: features, errors (layer, position), tokens, logits."""
    n_pos = len(graph.input_tokens)
    labels = [f"feature L{layer} p{pos} f{feat}" for layer, pos, feat in graph.active_features.tolist()]
    labels += [f"error L{layer} p{pos}" for layer in range(n_layers) for pos in range(n_pos)]
    labels += [f"token p{pos} id{int(t)}" for pos, t in enumerate(graph.input_tokens.tolist())]
    labels += [f"logit id{t.vocab_idx} {t.token_str!r}" for t in graph.logit_targets]
    return labels


def run_variant(name, skip, seed, cfg, tokenizer, state, hf_model, tensors):
    """Attribute one transcoder variant; its tensors go into ``tensors``, its summary is returned."""
    transcoders = random_transcoders(skip, seed)
    for layer, tc in enumerate(transcoders):
        for key, value in tc.state_dict().items():
            tensors["transcoders"][f"{name}.layer{layer}.{key}"] = value.detach().clone().contiguous()
    model = replacement_model(cfg, transcoders, tokenizer, state)
    tokens = tokenizer(PROMPT, return_tensors="pt").input_ids[0]
    tokens = torch.cat([torch.tensor([tokenizer.bos_token_id]), tokens])
    with torch.no_grad():
        hf_logits = hf_model(tokens[None]).logits[0, -1]
        logit_gap = (hf_logits - model(tokens[None])[0, -1]).abs().max().item()
    graph = attribute(
        tokens, model, max_n_logits=MAX_LOGITS, desired_logit_prob=LOGIT_PROBABILITY, batch_size=64
    )  # max_feature_nodes None: every active feature is a node
    replacement_score, completeness_score = compute_graph_scores(graph)
    pruned = prune_graph(graph, node_threshold=NODE_THRESHOLD, edge_threshold=EDGE_THRESHOLD)
    plain = HookedTransformer(cfg, tokenizer=tokenizer)
    plain.load_state_dict(state, strict=False)
    gap = (reference_adjacency(plain, transcoders, graph) - graph.adjacency_matrix).abs().max().item()
    scale = graph.adjacency_matrix.abs().max().item()
    assert logit_gap < 1e-4 and gap < 1e-4 * scale, (logit_gap, gap, scale)
    print(f"[{name}] {len(graph.active_features)} active features, {graph.adjacency_matrix.shape[0]} nodes, "
          f"logits {graph.logit_token_ids.tolist()}, scores {replacement_score:.4f} {completeness_score:.4f}, "
          f"pruned {int(pruned.node_mask.sum())} nodes {int(pruned.edge_mask.sum())} edges, "
          f"autograd rows vs circuit-tracer {gap:.1e} (max |edge| {scale:.1e})")  # fmt: skip
    outputs = {
        "input_tokens": graph.input_tokens,
        "adjacency_matrix": graph.adjacency_matrix,
        "active_features": graph.active_features,
        "activation_values": graph.activation_values,
        "selected_features": graph.selected_features,
        "logit_token_ids": graph.logit_token_ids,
        "logit_probabilities": graph.logit_probabilities,
        "prune_node_mask": pruned.node_mask,
        "prune_kept_edges": torch.nonzero(pruned.edge_mask).int(),  # [k, 2] (target, source): smaller than the mask
        "prune_cumulative_scores": pruned.cumulative_scores,
        "last_logits": hf_logits,
    }
    for key, value in outputs.items():
        tensors["graphs"][f"{name}.{key}"] = value.detach().cpu().contiguous()
    return {
        "skip": skip,
        "transcoder_seed": seed,
        "node_labels": node_labels(graph, cfg.n_layers),
        "replacement_score": replacement_score,
        "completeness_score": completeness_score,
        "hf_vs_transformer_lens_max_logit_diff": logit_gap,
        "autograd_vs_circuit_tracer_max_edge_diff": gap,
    }


def main() -> None:
    (OUT / "model").mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(True)
    tokenizer = build_tokenizer(OUT / "model")
    hf_model = build_hf_model(len(tokenizer))
    hf_model.save_pretrained(OUT / "model", safe_serialization=True)
    cfg = tl_config()
    state = tl_state_dict(hf_model, cfg)
    tensors: dict[str, dict[str, torch.Tensor]] = {"transcoders": {}, "graphs": {}}
    summary = {
        "versions": {
            package: version(package) for package in ("circuit-tracer", "transformer-lens", "transformers", "torch")
        },
        "prompt": PROMPT,
        "feature_input_hook": INPUT_HOOK,
        "feature_output_hook": OUTPUT_HOOK,
        "settings": {
            "max_n_logits": MAX_LOGITS,
            "desired_logit_prob": LOGIT_PROBABILITY,
            "node_threshold": NODE_THRESHOLD,
            "edge_threshold": EDGE_THRESHOLD,
        },
    }
    for name, skip, seed in VARIANTS:
        summary[name] = run_variant(name, skip, seed, cfg, tokenizer, state, hf_model, tensors)
    save_file(tensors["transcoders"], str(OUT / "transcoders.safetensors"), metadata={"layout": "circuit-tracer"})
    save_file(tensors["graphs"], str(OUT / "graphs.safetensors"))
    (OUT / "graphs.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
