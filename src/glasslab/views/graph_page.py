"""The attribution graph as one self-contained interactive HTML page (``AttributionGraph.save("graph.html")``).

Everything is inline (style, script, the graph's JSON): the file opens offline and can be mailed. Nodes sit
by layer (token embeddings at the bottom, the targets' logits at the top) and token position (left to
right); an edge's thickness follows |weight| and its colour the sign. Hovering a node shows its details,
clicking one keeps only its edges lit, and a slider hides the edges that carry the least of the total
|weight|. The drawing is the workbench panel's (``app/static/js/graphview.js``, inlined here), so the page
and the panel cannot drift apart. The explanation texts are the result's own (``views/graph_texts.py``), so
they match the figure, the report and the workbench.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;font-size:13px;color:#222;margin:16px}
h1{font-size:17px;margin:0 0 6px}.facts{color:#555;margin:2px 0}
table.scores{border-collapse:collapse;margin:8px 0}table.scores td,table.scores th{padding:2px 10px;text-align:right}
table.scores th:first-child,table.scores td:first-child{text-align:left}
.controls{margin:8px 0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
#canvas{overflow:auto;border:1px solid #ddd;background:#fcfcfc}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 8px;display:none;
font-size:12px;white-space:pre;box-shadow:0 1px 4px rgba(0,0,0,.2)}
.node{cursor:pointer}
.note{max-width:70em}
"""

# The drawing is the workbench panel's own module (one file for both); the page adds its tooltip, the click
# that lights one node's edges and the slider. A module script: the shared file's exports are legal there.
DRAWING = Path(__file__).resolve().parents[1] / "app" / "static" / "js" / "graphview.js"
_GLUE = r"""
const data = JSON.parse(document.getElementById('graph-data').textContent);
const g = data.graph, tipEl = document.getElementById('tip');
const num = v => v === null ? 'n/a' : v.toPrecision(4);
function tip(n, ev) {
  const where = n.layer === null ? (n.kind === 'token' ? 'embedding' : 'output') : 'layer ' + n.layer;
  const token = JSON.stringify(g.tokens[n.position]);
  tipEl.textContent = [n.id, 'kind: ' + n.kind, where + ', position ' + n.position + ' ' + token,
    VALUE_NAMES[n.kind] + ': ' + num(n.value), 'influence: ' + num(n.influence),
    'label: ' + (n.label || '(none)')].join('\n');
  tipEl.style.display = 'block';
  tipEl.style.left = (ev.clientX + 14) + 'px'; tipEl.style.top = (ev.clientY + 10) + 'px';
}
let chosen = new Set(), share = 1;
const redraw = () => view.show({share: share, chosen: chosen});
const view = drawGraph(document.getElementById('canvas'), g, data.n_layers, {
  hover: tip,
  leave: () => { tipEl.style.display = 'none'; },
  click: n => { chosen = chosen.has(n.id) ? new Set() : new Set([n.id]); redraw(); },
  background: () => { chosen = new Set(); redraw(); },
});
const slider = document.getElementById('share'), shown = document.getElementById('share-value');
slider.addEventListener('input', () => {
  share = slider.value / 100; shown.textContent = slider.value + '%'; redraw();
});
"""


def graph_page(graph: dict[str, Any], n_layers: int, notes: dict[str, str]) -> str:
    """The page for an attribution graph's JSON (``AttributionGraph.to_dict()``), the model's layer count and
    the result's explanation texts (``what_you_see``, ``how_to_read``, ``caveat``)."""
    targets = ", ".join(f"{t['label']!r} (p={t['probability']:.3f})" for t in graph["targets"])
    payload = json.dumps(_finite({"graph": graph, "n_layers": n_layers}), ensure_ascii=False, allow_nan=False)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    settings = graph.get("settings", {})
    facts = [
        f"model {graph['model']}",
        f"transcoders {settings.get('transcoders') or '(given in Python)'}",
        f"{len(graph['nodes'])} nodes and {len(graph['edges'])} edges kept of {graph['n_feature_nodes']} feature "
        f"nodes ({graph['n_active_features']} active features)",
        f"replay error {graph['replay_error']:.2g}",
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Attribution graph: {escape(graph['prompt'][:80])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Attribution graph for {escape(targets)}</h1>"
        f"<div class='facts'>prompt: {escape(repr(graph['prompt']))}</div>"
        + "".join(f"<div class='facts'>{escape(fact)}</div>" for fact in facts)
        + _scores_table(graph)
        + "<div class='controls'><label>Edges shown: the largest, carrying "
        "<input id='share' type='range' min='1' max='100' value='100'> <span id='share-value'>100%</span>"
        " of the total |weight|</label><span>Click a node to light its edges; click the background to clear. "
        "Blue edges push up, red push down.</span></div>"
        "<div id='canvas'></div><div id='tip'></div>"
        f"<p class='note'><b>What you see.</b> {escape(notes['what_you_see'])}</p>"
        f"<p class='note'><b>How to read it.</b> {escape(notes['how_to_read'])}</p>"
        f"<p class='note'><b>What it does not prove.</b> {escape(notes['caveat'])}</p>"
        f"<script type='application/json' id='graph-data'>{payload}</script>"
        f"<script type='module'>{DRAWING.read_text(encoding='utf-8')}{_GLUE}</script>"
        "</body></html>"
    )


def _scores_table(graph: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{graph['scores'][key]:.3f}</td><td>{graph['pruned_scores'][key]:.3f}</td></tr>"
        for name, key in (("replacement score", "replacement"), ("completeness score", "completeness"))
    )
    return f"<table class='scores'><tr><th></th><th>full graph</th><th>pruned graph</th></tr>{rows}</table>"


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers and the page's parser refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
