"""How long a feature's dashboard takes on the default model: read from the shipped SAE's precomputed atlas
(in Python and through the workbench's HTTP API) against the live corpus scan the workbench ran before
(32 sequences of 64 tokens), measured in the same run.

    python benchmarks/bench_sae_dashboard.py [--sae default:blocks.6.resid_post-topk-5120-k32] [--repeats 5]

Each repeat asks for another feature (so no cache answers), the contenders in turn (benchmarks/timing.py).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient
from timing import interleaved_medians

import glasslab as gl
from glasslab.app.server import create_app
from glasslab.dictionaries.loading import load_sae
from glasslab.methods.features.atlas import atlas_of
from glasslab.methods.features.dashboard import feature_dashboard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sae", default="default:blocks.6.resid_post-topk-5120-k32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = gl.load()
    sae = load_sae(args.sae, model)
    atlas = atlas_of(sae)
    if atlas is None:
        raise SystemExit(f"{args.sae} has no precomputed dashboards (glasslab sae precompute)")
    features = itertools.cycle(atlas.features[:: max(1, len(atlas.features) // 50)])
    client = TestClient(
        create_app(model, experiments_db=Path(tempfile.mkdtemp()) / "e.sqlite"), base_url="http://127.0.0.1"
    )

    def http() -> None:
        reply = client.post("/api/sae-dashboard", json={"sae": args.sae, "feature": next(features), "k": 10})
        assert reply.status_code == 200 and reply.json()["sequences"] == atlas.sequences, reply.text

    medians = interleaved_medians(
        {
            "atlas (Python)": lambda: feature_dashboard(model, sae, next(features)),
            "atlas (HTTP API)": http,
            "live scan, 32 x 64 tokens": lambda: feature_dashboard(
                model, sae, next(features), sequences=32, seq_len=64
            ),
        },
        args.repeats,
    )
    live = medians["live scan, 32 x 64 tokens"]
    print(
        f"{args.sae}: {len(atlas.features)} precomputed dashboards, read on {atlas.tokens:,} tokens of {atlas.corpus}"
    )
    for name, seconds in medians.items():
        print(f"{name:28s} {1000 * seconds:10.1f} ms   {live / seconds:8.1f}x faster than the live scan")


if __name__ == "__main__":
    main()
