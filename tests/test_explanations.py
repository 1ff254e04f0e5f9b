"""Explanations live in one place: the workbench's panels, tooltips and tutorial come from the same module as
results' figure notes, a panel showing a result shares its caveat, and ``GET /api/explanations`` serves them
(explain.js keeps no copy of its own)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from glasslab.views.explanations import catalogue
from glasslab.views.result_texts import RESULTS
from glasslab.views.workbench_texts import CONTROLS, PANELS, TUTORIAL

from .test_server_helpers import client
from .tiny import tiny_model

JS = Path(__file__).resolve().parents[1] / "src" / "glasslab" / "app" / "static" / "js"


def test_workbench_texts_cover_every_panel_and_control_the_page_uses():
    order = (JS / "panels" / "index.js").read_text(encoding="utf-8")
    used_panels = set(re.findall(r"\[\s*'(\w+)'\s*,", order))
    assert used_panels and used_panels <= set(PANELS)
    used_controls = {m for path in JS.rglob("*.js") for m in re.findall(r"CONTROLS\.(\w+)", path.read_text("utf-8"))}
    assert used_controls and used_controls <= set(CONTROLS)
    assert {step["panel"] for step in TUTORIAL} <= set(PANELS)
    assert "PANELS = {}" in (JS / "explain.js").read_text(encoding="utf-8")  # no second copy of the texts


def test_a_panel_showing_a_result_shares_its_caveat():
    for panel, kind in (("predictions", "prediction"), ("ablation", "ablation"), ("patching", "activation_patching")):
        assert PANELS[panel].caveat == RESULTS[kind].caveat


def test_the_server_serves_the_same_texts(tmp_path):
    served = client(tiny_model("gemma3"), tmp_path).get("/api/explanations")
    assert served.status_code == 200
    body = served.json()
    assert body == json.loads(json.dumps(catalogue()))
    assert body["results"]["ablation"]["caveat"] == RESULTS["ablation"].caveat
    assert body["panels"]["attention"] == {
        "title": PANELS["attention"].title,
        "see": PANELS["attention"].see,
        "read": PANELS["attention"].read,
        "caveat": RESULTS["attention"].caveat,
    }
    assert body["controls"] == CONTROLS and body["tutorial"] == TUTORIAL
