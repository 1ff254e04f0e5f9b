"""The workbench's "train an SAE for this layer" on the offline default model, driven through the HTTP API as
the SAE panel drives it: ``GET /api/saes`` (the proposed sizes), the ``sae-train-estimate`` job, then the
``sae-train`` job. Prints the estimate and its parts, the real time of the job, the ratio, the trained
SAE's held-out figures and the machine's load before and after (the machine may be shared: the estimate
measures it as it is at that moment).

The model is loaded from your store; the SAE is written to a temporary store, which is then deleted.

    .venv/bin/python benchmarks/bench_app_sae_training.py --layer 6
    .venv/bin/python benchmarks/bench_app_sae_training.py --layer 6 --harvest-tokens 8192 --tokens 16384
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GLASSLAB_PROGRESS", "0")

from fastapi.testclient import TestClient

import glasslab as gl
from glasslab.app import create_app


def finished(client: TestClient, job_id: str) -> dict:
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--tokens", type=int, help="rows trained on (default: the workbench's)")
    parser.add_argument("--harvest-tokens", type=int, help="rows read from the model (default: the workbench's)")
    args = parser.parse_args()
    sizes = {k: v for k, v in (("tokens", args.tokens), ("harvest_tokens", args.harvest_tokens)) if v is not None}

    model = gl.load()
    with tempfile.TemporaryDirectory(prefix="glasslab-bench-") as home:
        os.environ["GLASSLAB_HOME"] = home  # after loading: the model comes from your store, the SAE goes here
        app = create_app(model, experiments_db=f"{home}/e.sqlite", sae_training=sizes)
        client = TestClient(app, base_url="http://127.0.0.1")
        plan = client.get("/api/saes").json()["training"]
        body = {"kind": "sae-train-estimate", "params": {"layer": args.layer, **sizes}}
        load_before = os.getloadavg()
        start = time.perf_counter()
        estimate = finished(client, client.post("/api/jobs", json=body).json()["id"])
        measuring = time.perf_counter() - start
        if estimate["status"] != "done":
            raise SystemExit(f"estimate {estimate['status']}: {estimate['error']}")
        start = time.perf_counter()
        job = finished(client, client.post("/api/jobs", json={**body, "kind": "sae-train"}).json()["id"])
        actual = time.perf_counter() - start
        if job["status"] != "done":
            raise SystemExit(f"training {job['status']}: {job['error']}")
        result, parts = job["result"], estimate["result"]
        report = {
            "model": model.name,
            "layer": args.layer,
            "plan": plan,
            "measuring_s": round(measuring, 1),
            "estimate": {k: parts[k] for k in ("seconds", "harvest_s", "train_s", "evaluate_s", "text_s", "fixed_s")},
            "measured": {k: parts[k] for k in ("sequence_s", "step_s", "probe_s")},
            "actual_s": round(actual, 1),
            "estimate_over_actual": round(parts["seconds"] / actual, 2),
            "sae": result["name"],
            "last_training_batch": result["final"],
            "held_out": {k: result["evaluation"][k] for k in ("tokens", "fve", "l0", "dead_fraction")},
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
