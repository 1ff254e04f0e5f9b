"""Speed and memory of attribution graphs on the default model (issue 20, item 6).

For each prompt length (10 tokens up to 128), one child process loads the default model (Gemma 3 270M)
and a transcoder set, builds one graph and reports its wall time, the active features and nodes, and the
process's peak resident memory (so each length's peak is its own). With ``--transcoders NAME`` (``default``:
the shipped set) a trained set is used; otherwise a random TopK set (``--width``, ``--k``) of the same shape,
whose active-feature count (k per token and layer) is what sets the cost.

circuit-tracer cannot be installed beside glasslab (it pins transformers<=4.57.3 and huggingface-hub<1.0;
glasslab needs transformers 5), so it runs in its own virtual environment: ``scripts/peers/circuit_tracer_graph.py``
compares it on a tiny model; ``benchmarks/bench_graph_circuit_tracer.py`` (where present) times it on this model.

Run: .venv/bin/python benchmarks/bench_graph.py [--lengths 10 32 64 128] [--transcoders default]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TEXT = (
    "The capital of France is Paris, and the capital of Italy is Rome. The river that runs through Paris is the "
    "Seine, and the one through Rome is the Tiber. Both cities were founded long ago, and both grew around bridges "
    "and markets where traders from the whole region met to sell grain, wine, cloth and salt. Today millions of "
    "visitors walk the old streets every year, looking at churches, palaces and museums, eating in small cafes and "
    "buying postcards to send home to their families and friends in other countries far away across the sea. "
    "In the evening the bridges are lit, boats carry tourists up and down the river, and the smell of bread comes "
    "from the bakeries that open before dawn."
)


def random_transcoders(model, width: int, k: int):
    """A TopK transcoder per layer with random weights (what the graph costs depends on k, not on training)."""
    import torch

    from glasslab.dictionaries import DictionaryConfig, dictionary_class
    from glasslab.dictionaries.transcoder_set import TranscoderSet

    generator = torch.Generator().manual_seed(0)
    by_layer = {}
    for layer in range(model.n_layers):
        cfg = DictionaryConfig(
            architecture="topk_transcoder",
            d_in=model.d_model,
            d_sae=width,
            hook=f"blocks.{layer}.mlp.in",
            hook_out=f"blocks.{layer}.mlp_out",
            d_out=model.d_model,
            k=k,
            apply_b_dec_to_input=False,
        )
        transcoder = dictionary_class("topk_transcoder")(cfg)
        with torch.no_grad():
            for param in transcoder.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[0] ** 0.5)
        by_layer[layer] = transcoder
    return TranscoderSet(by_layer, n_layers=model.n_layers, model_name=model.name)


def child(length: int, transcoders_name: str | None, width: int, k: int, batch_size: int) -> dict:
    import glasslab as gl
    from glasslab.dictionaries.transcoder_catalog import open_transcoders
    from glasslab.methods.graphs import attribution_graph

    model = gl.load()
    ids = model.to_tokens(TEXT)[0][:length]
    prompt = model.tokenizer.decode(ids[1:])  # the BOS is added back by the graph's tokenisation
    transcoders = open_transcoders(transcoders_name, model) if transcoders_name else random_transcoders(model, width, k)
    start = time.perf_counter()
    graph = attribution_graph(model, prompt, transcoders, batch_size=batch_size, target=None)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "tokens": len(graph.tokens),
        "seconds": round(seconds, 2),
        "active_features": graph.n_active_features,
        "feature_nodes": graph.n_feature_nodes,
        "kept_nodes": len(graph.nodes),
        "replacement_score": round(graph.scores.replacement, 3),
        "peak_rss_mb": round(peak_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 32, 64, 128])
    parser.add_argument("--transcoders", default=None, help="a trained transcoder set in the store")
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.transcoders, args.width, args.k, args.batch_size)))
        return
    print(f"{'tokens':>6} {'seconds':>8} {'active':>7} {'nodes':>6} {'kept':>5} {'repl.':>6} {'peak MB':>8}")
    for length in args.lengths:
        command = [
            sys.executable,
            __file__,
            "--child",
            str(length),
            "--width",
            str(args.width),
            "--k",
            str(args.k),
            "--batch-size",
            str(args.batch_size),
        ]
        if args.transcoders:
            command += ["--transcoders", args.transcoders]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        print(
            f"{row['tokens']:>6} {row['seconds']:>8} {row['active_features']:>7} {row['feature_nodes']:>6} "
            f"{row['kept_nodes']:>5} {row['replacement_score']:>6} {row['peak_rss_mb']:>8}"
        )


if __name__ == "__main__":
    main()
