"""circuit-tracer's attribution graphs on glasslab's default model and shipped transcoders (issue 20, item 6).

The peer of ``benchmarks/bench_graph.py``: the same model (Gemma 3 270M, loaded offline from glasslab's
converted folder in the store into TransformerLens, float32 on the CPU), the same transcoders (the shipped
``english-topk-skip-896-k32`` set, converted in memory to circuit-tracer's ``SingleLayerTranscoder``), the same
prompts (``bench_graph.TEXT`` cut to 10, 32, 64 and 128 tokens, BOS included) and glasslab's defaults
(batch size 64, at most 4096 feature nodes, 10 logits up to probability 0.95, pruning 0.8 / 0.98). For each
length one child process builds one graph and reports the seconds spent in circuit-tracer's ``attribute``, the
seconds of its ``compute_graph_scores`` and ``prune_graph`` (glasslab's timing includes both), the active
features, the nodes, the kept nodes, the replacement score and the process's peak resident memory.

Transcoders: circuit-tracer 0.5.0 has a ``TopK`` activation (``circuit_tracer.transcoder.activation_functions``)
that keeps the k largest pre-activations unchanged, negative ones included; glasslab's TopK also ReLUs them, so
the activation here is ``TopK(32)`` followed by ``ReLU``, which gives the same features. Layout: SAELens's
``W_enc`` [d_model, d_sae] is transposed to circuit-tracer's [d_sae, d_model]; ``W_dec`` and ``W_skip``
(``x @ W_skip.T``) keep theirs. Hooks: features read ``mlp.hook_in`` (the MLP input after the pre-feed-forward
RMSNorm, as glasslab's ``blocks.L.mlp.in``) and write ``hook_mlp_out`` (after the post-feed-forward RMSNorm, as
glasslab's ``blocks.L.mlp_out``).

circuit-tracer pins transformers<=4.57.3 and huggingface-hub<1.0, so it runs in its own virtual environment
(no hub access is needed: the model comes from the store, made by ``glasslab`` in its own environment first):

    python3 -m venv /tmp/ctvenv
    /tmp/ctvenv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/ctvenv/bin/pip install circuit-tracer==0.5.0 transformer-lens==3.2.1 transformers==4.57.3
    /tmp/ctvenv/bin/python benchmarks/bench_graph_circuit_tracer.py [--lengths 10 32 64 128] [--model-folder DIR]

With ``--glasslab-python .venv/bin/python`` each length is also drawn by glasslab (``bench_graph.py``'s child, the
shipped set) right after circuit-tracer, and the time and memory ratios are printed: both see the same load.
"""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"  # everything comes from local folders
os.environ["WANDB_MODE"] = "disabled"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRANSCODERS = REPO / "src" / "glasslab" / "sae" / "shipped_transcoders" / "english-topk-skip-896-k32"
MODEL_FOLDER = Path.home() / ".cache" / "glasslab" / "models" / "gemma-3-270m"
TL_NAME = "google/gemma-3-270m"  # TransformerLens's built-in config for this architecture (no hub access)
MAX_LOGITS, LOGIT_PROBABILITY, NODE_THRESHOLD, EDGE_THRESHOLD = 10, 0.95, 0.8, 0.98  # glasslab's defaults


def prompt_text() -> str:
    """bench_graph.py's TEXT, read from its source so that glasslab need not be importable here."""
    sys.path.insert(0, str(HERE))
    from bench_graph import TEXT

    return TEXT


def shipped_transcoders(k: int):
    """The shipped TopK skip transcoders as circuit-tracer's TranscoderSet (float32, CPU)."""
    import torch
    from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet
    from circuit_tracer.transcoder.activation_functions import TopK
    from safetensors.torch import load_file

    index = json.loads((TRANSCODERS / "transcoders.json").read_text())
    activation = torch.nn.Sequential(TopK(k), torch.nn.ReLU())  # glasslab: ReLU of the k largest pre-activations
    by_layer = {}
    for layer in index["layers"]:
        weights = {
            name: t.float()
            for name, t in load_file(TRANSCODERS / index["folders"][str(layer)] / "sae_weights.safetensors").items()
        }
        d_model, d_sae = weights["W_enc"].shape
        transcoder = SingleLayerTranscoder(
            d_model, d_sae, activation, layer, skip_connection=True, device=torch.device("cpu"), dtype=torch.float32
        )
        with torch.no_grad():
            transcoder.W_enc.copy_(weights["W_enc"].T)
            transcoder.b_enc.copy_(weights["b_enc"])
            transcoder.W_dec.copy_(weights["W_dec"])
            transcoder.b_dec.copy_(weights["b_dec"])
            transcoder.W_skip.copy_(weights["W_skip"])
        by_layer[layer] = transcoder
    return TranscoderSet(by_layer, feature_input_hook="mlp.hook_in", feature_output_hook="hook_mlp_out")


def replacement_model(folder: Path, transcoders):
    """TransformerLens's Gemma 3 built from the local Hugging Face folder, wrapped by circuit-tracer."""
    import torch
    from circuit_tracer import ReplacementModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = ReplacementModel.from_pretrained_and_transcoders(
        TL_NAME, transcoders, hf_model=hf_model, tokenizer=tokenizer, device=torch.device("cpu"), dtype=torch.float32
    )
    return model, tokenizer


def child(length: int, folder: Path, batch_size: int, max_feature_nodes: int, k: int) -> dict:
    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    model, tokenizer = replacement_model(folder, shipped_transcoders(k))
    ids = tokenizer(prompt_text(), return_tensors="pt").input_ids[0][:length]  # BOS first, as glasslab's
    start = time.perf_counter()
    graph = attribute(
        ids,
        model,
        max_n_logits=MAX_LOGITS,
        desired_logit_prob=LOGIT_PROBABILITY,
        batch_size=batch_size,
        max_feature_nodes=max_feature_nodes,
    )
    attribute_seconds = time.perf_counter() - start
    start = time.perf_counter()
    replacement_score, _ = compute_graph_scores(graph)
    pruned = prune_graph(graph, node_threshold=NODE_THRESHOLD, edge_threshold=EDGE_THRESHOLD)
    prune_seconds = time.perf_counter() - start
    return {
        "tokens": len(graph.input_tokens),
        "seconds": round(attribute_seconds, 2),
        "prune_seconds": round(prune_seconds, 2),
        "active_features": len(graph.active_features),
        "feature_nodes": len(graph.selected_features),
        "kept_nodes": int(pruned.node_mask.sum()),
        "replacement_score": round(float(replacement_score), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run_child(command: list[str]) -> dict:
    """One graph in a fresh process (so that its peak memory is its own); its last line is the JSON row."""
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def glasslab_row(python: str, length: int, batch_size: int) -> dict:
    """bench_graph.py's child for the same length, run with glasslab's own interpreter."""
    command = [python, str(HERE / "bench_graph.py"), "--child", str(length), "--transcoders", "default"]
    return run_child([*command, "--batch-size", str(batch_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 32, 64, 128])
    parser.add_argument("--model-folder", type=Path, default=MODEL_FOLDER, help="glasslab's converted model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-feature-nodes", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument(
        "--glasslab-python",
        default=None,
        help="glasslab's interpreter (.venv/bin/python): time glasslab on each length right after circuit-tracer "
        "and print the ratios",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.model_folder, args.batch_size, args.max_feature_nodes, args.k)))
        return
    header = ("tokens", "seconds", "prune s", "active", "nodes", "kept", "repl.", "peak MB")
    widths = (6, 8, 8, 7, 6, 5, 6, 8)
    if args.glasslab_python:
        header += ("glasslab s", "peak MB", "repl.", "time ct/gl", "mem ct/gl")
        widths += (10, 8, 6, 10, 9)
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, widths, strict=True)))
    for length in args.lengths:
        command = [sys.executable, __file__, "--child", str(length), "--model-folder", str(args.model_folder)]
        command += ["--batch-size", str(args.batch_size), "--max-feature-nodes", str(args.max_feature_nodes)]
        row = run_child([*command, "--k", str(args.k)])
        cells = [row[key] for key in ("tokens", "seconds", "prune_seconds", "active_features", "feature_nodes")]
        cells += [row["kept_nodes"], row["replacement_score"], row["peak_rss_mb"]]
        if args.glasslab_python:
            ours = glasslab_row(args.glasslab_python, length, args.batch_size)
            cells += [ours["seconds"], ours["peak_rss_mb"], ours["replacement_score"]]
            theirs = row["seconds"] + row["prune_seconds"]  # glasslab's seconds include scoring and pruning
            cells += [round(theirs / ours["seconds"], 2), round(row["peak_rss_mb"] / ours["peak_rss_mb"], 2)]
        print(" ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True)), flush=True)


if __name__ == "__main__":
    main()
