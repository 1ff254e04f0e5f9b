"""Circuit view data: pruning and edge flags on hand-made tables, node effects against one Patch per
component, measured edges equal to path patching, and the CLI commands."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.circuit  # registers path-patch and circuit
from glasslab.cli.app import app
from glasslab.errors import InputError
from glasslab.methods.patch.circuit import build_circuit, circuit
from glasslab.methods.patch.patching import activation_patching
from glasslab.methods.patch.path_patching import PathEffect, PathPatching, path_patching

from .tiny import save_tiny, tiny_model

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPTED = "when mary and john went to the store mary gave a drink to"
TARGET, VERSUS = "mary", "john"


class Table:
    """A hand-made patching table: only the fields the Protocol asks for."""

    def __init__(self, cells, direction=None):
        self.cells = cells
        self.direction = direction
        self.metric = "logit diff"
        self.clean_value, self.corrupted_value = 2.0, -1.0


def cell(site, layer, head, normalised, position=None):
    return {"site": site, "layer": layer, "head": head, "position": position, "raw": 0.0, "normalised": normalised}


CELLS = [
    cell("attn.z", 0, 0, 0.05),
    cell("attn.z", 0, 1, 0.40),
    cell("attn.z", 1, 0, -0.30),
    cell("attn.z", 1, 1, 0.02),
    cell("mlp_out", 0, None, 0.20),
    cell("mlp_out", 1, None, 0.01),
    cell("resid_pre", 1, None, 0.9),
]


def paths_to_logits(effects: dict[tuple[int, int], float]) -> PathPatching:
    rows = [PathEffect((s,), 0.0, 3.0 * f, f) for s, f in effects.items()]
    return PathPatching("m", ["c"], ["x"], "logit diff", "logit_diff", "noising", ["logits"], False, 2.0, -1.0, rows)


def test_pruning_by_top_and_threshold():
    result = build_circuit(Table(CELLS), top=3, n_layers=2)
    ids = [n.id for n in result.nodes]
    # Layer order, embed first and logits last; the residual-stream cell is no component.
    assert ids == ["embed", "L0.H1", "L0.MLP", "L1.H0", "logits"]
    assert {n.id: n.effect for n in result.nodes}["L1.H0"] == pytest.approx(-0.30)
    assert result.source["ignored_sites"] == ["resid_pre"]
    by_threshold = build_circuit(Table(CELLS), top=None, threshold=0.04)
    assert [n.id for n in by_threshold.nodes][1:-1] == ["L0.H0", "L0.H1", "L0.MLP", "L1.H0"]
    assert by_threshold.thresholds == {"top": None, "threshold": 0.04, "candidates": 6, "kept": 4}


def test_noising_tables_measure_the_distance_from_clean():
    cells = [cell("attn.z", 0, 0, 0.95), cell("attn.z", 1, 1, 0.2), cell("attn.head_out", 1, 0, 1.0)]
    result = build_circuit(Table(cells, direction="noising"), top=1)
    assert [n.id for n in result.nodes] == ["embed", "L1.H1", "logits"]
    assert result.nodes[1].effect == pytest.approx(0.8)


def test_positions_take_the_strongest_unless_all_positions_were_patched():
    cells = [cell("attn.z", 0, 0, 0.1, position=2), cell("attn.z", 0, 0, -0.6, position=5), cell("mlp", 0, None, 0.3)]
    node = build_circuit(Table(cells), top=5).nodes[1]
    assert (node.id, node.position, node.effect) == ("L0.H0", 5, pytest.approx(-0.6))
    cells.append(cell("attn.z", 0, 0, 0.05))
    node = build_circuit(Table(cells), top=5).nodes[1]
    assert (node.position, node.effect) == (None, pytest.approx(0.05))


def test_unmeasured_edges_are_flagged_and_measured_ones_carry_path_effects():
    result = build_circuit(Table(CELLS), [paths_to_logits({(0, 1): 0.25, (1, 0): -0.1, (1, 1): 0.5})], top=3)
    edges = {(e.source, e.target): e for e in result.edges}
    assert edges[("L0.H1", "logits")].measured and edges[("L0.H1", "logits")].effect == 0.25
    assert edges[("L1.H0", "logits")].effect == -0.1 and edges[("L1.H0", "logits")].via == ["logits"]
    # L1.H1 was pruned, so its measured path is not drawn.
    assert all("L1.H1" not in key for key in edges)
    # Every other edge is layer-ordered only: flagged, with no number a drawing could mistake for a measurement.
    unmeasured = [e for e in result.edges if not e.measured]
    assert unmeasured and all(e.effect is None and e.metric_change is None for e in unmeasured)
    assert ("L0.H1", "L0.MLP") in edges and ("L0.MLP", "L0.H1") not in edges and ("L1.H0", "L0.H1") not in edges
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "circuit" and {"nodes", "edges", "thresholds", "source"} <= set(data)
    assert sum(e["measured"] for e in data["edges"]) == 2
    assert "paths between kept components" in result._repr_html_()


def test_a_to_dict_table_works_too():
    result = build_circuit({"kind": "activation_patching", "cells": CELLS, "direction": "denoising"}, top=2)
    assert result.source["nodes_from"][0]["kind"] == "activation_patching" and len(result.nodes) == 4
    # Several tables merge; patching results name the direction "mode".
    noising = {"cells": [cell("mlp_out", 1, None, 0.1)], "mode": "noising"}
    merged = build_circuit([{"cells": CELLS}, noising], top=1)
    assert [n.id for n in merged.nodes] == ["embed", "L1.MLP", "logits"] and merged.nodes[1].effect == pytest.approx(
        0.9
    )


def test_bad_tables():
    with pytest.raises(InputError, match="no cells"):
        build_circuit(Table([]))
    with pytest.raises(InputError, match="no head, MLP"):
        build_circuit(Table([cell("resid_post", 0, None, 0.5)]))
    with pytest.raises(InputError, match="top must"):
        build_circuit(Table(CELLS), top=0)


def test_circuit_nodes_are_noising_patches_of_single_components():
    """Each kept component's effect is 1 - normalised metric after one Patch of its corrupted activation (every
    position) into the clean run."""
    model = tiny_model("gemma3")
    result = circuit(model, CLEAN, CORRUPTED, target=TARGET, versus=VERSUS, top=5)
    hooks = [f"blocks.{layer}.{site}" for layer in range(model.n_layers) for site in ("attn.z", "mlp_out")]
    corrupted = model.run(CORRUPTED, cache=hooks)
    t, v = (model.tokenizer.convert_tokens_to_ids(w) for w in (TARGET, VERSUS))
    gap = result.clean_value - result.corrupted_value
    kept = [n for n in result.nodes if n.kind in ("head", "mlp")]
    assert len(kept) == 5 and result.thresholds["candidates"] == model.n_layers * (model.n_heads + 1)
    for node in kept:
        site, head = ("attn.z", {"head": node.head}) if node.kind == "head" else ("mlp_out", {})
        run = model.run(CLEAN, interventions=[gl.Patch(f"blocks.{node.layer}.{site}", source=corrupted, **head)])
        value = float(run.logits[0, -1, t] - run.logits[0, -1, v])
        assert node.effect == pytest.approx((result.clean_value - value) / gap, abs=1e-4)


def test_circuit_measures_the_kept_heads_paths():
    model = tiny_model("llama")
    result = circuit(model, CLEAN, CORRUPTED, target=TARGET, versus=VERSUS, top=4, head_edges=True)
    heads = [(n.layer, n.head) for n in result.nodes if n.kind == "head"]
    assert heads
    direct = path_patching(model, CLEAN, CORRUPTED, senders=heads, target=TARGET, versus=VERSUS)
    edges = {(e.source, e.target): e for e in result.edges}
    for row in direct.rows:
        edge = edges[(row.label, "logits")]
        assert edge.measured and edge.effect == pytest.approx(row.fraction, abs=1e-6)
    # Head-to-head edges are measured into the receiver's q, k and v together.
    later = [e for e in result.edges if e.measured and e.target != "logits"]
    assert all(e.via[0].endswith(".q") and len(e.via) == 3 for e in later)
    assert later
    # tiny llama groups 2 query heads per key/value head, so those inputs are shared.
    assert all(e.shared_kv for e in later) and not any(e.shared_kv for e in result.edges if e.target == "logits")
    assert all(e.effect is None for e in result.edges if not e.measured)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("circuit") / "tiny-gemma3"
    save_tiny("gemma3", path)
    return path


def test_cli(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()
    common = [CLEAN, CORRUPTED, "--target", TARGET, "--versus", VERSUS, "--model", str(folder)]
    done = runner.invoke(app, ["path-patch", *common, "--senders", "0.1,1.2", "--receivers", "2.0.q,2.0.v", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    model = gl.load(folder)
    expected = path_patching(
        model, CLEAN, CORRUPTED, senders=[(0, 1), (1, 2)], receivers=["2.0.q", "2.0.v"], target=TARGET, versus=VERSUS
    )
    assert [r["value"] for r in data["rows"]] == pytest.approx([r.value for r in expected.rows], abs=1e-6)
    together = runner.invoke(app, ["path-patch", *common, "--senders", "0.1,1.2", "--together"])
    assert together.exit_code == 0 and "L0.H1+L1.H2" in together.stdout
    table = runner.invoke(app, ["circuit", *common, "--top", "3", "--out", str(tmp_path / "c.html")])
    assert table.exit_code == 0, table.output
    assert "logits" in table.stdout and (tmp_path / "c.html").exists()
    bad = runner.invoke(app, ["path-patch", *common, "--receivers", "2.0"])
    assert bad.exit_code == 2 and "LAYER.HEAD" in bad.output


@pytest.mark.slow
def test_ioi_circuit_on_the_default_model(default_model):
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    result = circuit(default_model, clean, corrupted, target=" Mary", versus=" John", top=8)
    for n in result.nodes:
        print(n.id, None if n.effect is None else round(n.effect, 3))
    for e in result.edges:
        if e.measured:
            print(e.source, "->", e.target, round(e.effect, 3), round(e.metric_change, 3))
    assert sum(e.measured for e in result.edges) == sum(n.kind == "head" for n in result.nodes)
    assert torch.isfinite(torch.tensor([e.effect for e in result.edges if e.measured])).all()


def test_last_layer_heads_have_no_path_but_the_direct_one():
    """A last-layer head reaches the logits only directly (and through its own layer's MLP, recomputed in both), so
    its path-patching effect into the logits equals its plain activation-patching effect."""
    model = tiny_model("gemma2")
    sweep = activation_patching(model, CLEAN, CORRUPTED, target=TARGET, versus=VERSUS, site="attn.z", noising=True)
    last = model.n_layers - 1
    heads = [(last, h) for h in range(model.n_heads)]
    paths = path_patching(model, CLEAN, CORRUPTED, senders=heads, target=TARGET, versus=VERSUS)
    patched = {(c["layer"], c["head"]): c["raw"] for c in sweep.cells}
    for row in paths.rows:
        assert row.value == pytest.approx(patched[row.senders[0]], abs=1e-5)
