"""The attribution graph as one self-contained interactive HTML page (``AttributionGraph.save("graph.html")``).

Everything is inline (style, script, the graph's JSON): the file opens offline and can be mailed. Nodes sit
by layer (token embeddings at the bottom, the targets' logits at the top) and token position (left to
right); an edge's thickness follows |weight| and its colour the sign. Hovering a node shows its details,
clicking one keeps only its edges lit, and a slider hides the edges that carry the least of the total
|weight|. The explanation texts are the result's own (``views/graph_texts.py``), so they match the figure,
the report and the workbench.
"""

from __future__ import annotations

import json
import math
from html import escape
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
.edge{fill:none;stroke-linecap:round}.edge.faded{opacity:.06}.node{cursor:pointer;stroke:#333;stroke-width:.7}
.node.faded{opacity:.2}.node.chosen{stroke:#000;stroke-width:2.5}.axis{fill:#777;font-size:11px}
.note{max-width:70em}
"""

# Reads the graph's JSON from the page; builds the SVG with DOM calls (text always via textContent).
_SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById('graph-data').textContent);
const g = data.graph, L = data.n_layers, P = g.tokens.length, NS = 'http://www.w3.org/2000/svg';
const row = n => n.kind === 'token' ? 0 : n.kind === 'logit' ? L + 1 : n.layer + 1;
const cells = {};
g.nodes.forEach(n => { const k = row(n) + ':' + n.position; (cells[k] = cells[k] || []).push(n); });
const widths = [];
for (let p = 0; p < P; p++) {
  let most = 1;
  for (let r = 0; r <= L + 1; r++) most = Math.max(most, (cells[r + ':' + p] || []).length);
  widths.push(Math.max(90, 18 * most + 12));
}
const left = 60, rowH = 70, top = 40, starts = [left];
widths.forEach(w => starts.push(starts[starts.length - 1] + w));
const W = starts[P] + 20, H = top + (L + 2) * rowH + 30, at = {};
Object.entries(cells).forEach(([k, list]) => {
  const [r, p] = k.split(':').map(Number);
  list.sort((a, b) => b.influence - a.influence);
  list.forEach((n, i) => { at[n.id] = [starts[p] + (i + .5) * widths[p] / list.length, top + (L + 1 - r) * rowH]; });
});
const svg = document.createElementNS(NS, 'svg');
svg.setAttribute('width', W); svg.setAttribute('height', H);
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  Object.entries(attrs).forEach(([a, v]) => e.setAttribute(a, v));
  (parent || svg).appendChild(e); return e;
}
function text(x, y, s, anchor) {
  const t = el('text', {x: x, y: y, class: 'axis', 'text-anchor': anchor || 'middle'}); t.textContent = s;
}
const rowName = r => r === 0 ? 'emb' : r === L + 1 ? 'logit' : 'L' + (r - 1);
for (let r = 0; r <= L + 1; r++) text(8, top + (L + 1 - r) * rowH + 4, rowName(r), 'start');
g.tokens.forEach((t, p) => text(starts[p] + widths[p] / 2, H - 8, JSON.stringify(t)));
const edgeLayer = el('g', {}), nodeLayer = el('g', {});
const maxW = Math.max(1e-12, ...g.edges.map(e => Math.abs(e.weight)));
const total = g.edges.reduce((s, e) => s + Math.abs(e.weight), 0) || 1;
let before = 0;
const edges = g.edges.filter(e => at[e.source] && at[e.target]).map(e => {
  const [x1, y1] = at[e.source], [x2, y2] = at[e.target], bend = (y1 - y2) / 3;
  const path = el('path', {class: 'edge', d: `M${x1},${y1} C${x1},${y1 - bend} ${x2},${y2 + bend} ${x2},${y2}`,
    stroke: e.weight >= 0 ? '#2e6fba' : '#c0392b', 'stroke-width': (.4 + 5 * Math.abs(e.weight) / maxW).toFixed(2),
    'stroke-opacity': .55}, edgeLayer);
  const item = {e: e, path: path, share: before / total}; before += Math.abs(e.weight); return item;
});
const shapes = {};
const fill = {feature: '#e0a526', error: '#9a9a9a', token: '#7fb77e', logit: '#8e6cc0'};
g.nodes.forEach(n => {
  const [x, y] = at[n.id];
  const s = n.kind === 'feature' ? el('circle', {cx: x, cy: y, r: 6}, nodeLayer)
    : el('rect', {x: x - 6, y: y - 6, width: 12, height: 12, rx: n.kind === 'error' ? 0 : 3}, nodeLayer);
  s.setAttribute('class', 'node'); s.setAttribute('fill', fill[n.kind]); s.dataset.id = n.id;
  s.addEventListener('mousemove', ev => tip(ev, n));
  s.addEventListener('mouseleave', () => { tipEl.style.display = 'none'; });
  s.addEventListener('click', ev => { ev.stopPropagation(); choose(chosen === n.id ? null : n.id); });
  shapes[n.id] = s;
  if (n.kind === 'logit') text(x, y - 12, n.label);
});
document.getElementById('canvas').appendChild(svg);
const tipEl = document.getElementById('tip');
const valueName = {feature: 'activation', error: 'error norm', logit: 'logit - mean logit', token: 'value'};
const num = v => v === null ? 'n/a' : v.toPrecision(4);
function tip(ev, n) {
  const where = n.layer === null ? (n.kind === 'token' ? 'embedding' : 'output') : 'layer ' + n.layer;
  const token = JSON.stringify(g.tokens[n.position]);
  tipEl.textContent = [n.id, 'kind: ' + n.kind, where + ', position ' + n.position + ' ' + token,
    valueName[n.kind] + ': ' + num(n.value), 'influence: ' + num(n.influence),
    'label: ' + (n.label || '(none)')].join('\n');
  tipEl.style.display = 'block';
  tipEl.style.left = (ev.clientX + 14) + 'px'; tipEl.style.top = (ev.clientY + 10) + 'px';
}
let chosen = null, share = 1;
function draw() {
  const lit = new Set();
  edges.forEach(it => {
    const shown = it.share < share, touches = chosen === null || it.e.source === chosen || it.e.target === chosen;
    it.path.style.display = shown ? '' : 'none';
    it.path.classList.toggle('faded', shown && !touches);
    if (shown && (chosen === null || touches)) { lit.add(it.e.source); lit.add(it.e.target); }
  });
  g.nodes.forEach(n => {
    const keep = lit.has(n.id) || (chosen === null && (n.kind === 'token' || n.kind === 'logit'));
    shapes[n.id].classList.toggle('faded', !keep);
    shapes[n.id].classList.toggle('chosen', n.id === chosen);
  });
}
function choose(id) { chosen = id; draw(); }
svg.addEventListener('click', () => choose(null));
const slider = document.getElementById('share'), shown = document.getElementById('share-value');
slider.addEventListener('input', () => { share = slider.value / 100; shown.textContent = slider.value + '%'; draw(); });
draw();
})();
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
        f"<script type='application/json' id='graph-data'>{payload}</script><script>{_SCRIPT}</script>"
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
