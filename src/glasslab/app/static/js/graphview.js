// An attribution graph drawn as SVG: nodes by layer (token embeddings at the bottom, the targets' logits at the
// top) and token position (left to right), edges as curves whose thickness follows |weight| and whose colour
// is the sign. Shared by the workbench's graph panel and the standalone page (views/graph_page.py inlines this
// file), so it imports nothing and builds every element with DOM calls (text always via textContent).

const NS = 'http://www.w3.org/2000/svg';
export const EDGE_COLOURS = { up: '#2e6fba', down: '#c0392b' }; // blue pushes up, red pushes down
const FILL = { feature: '#e0a526', error: '#9a9a9a', token: '#7fb77e', logit: '#8e6cc0', supernode: '#d4569a' };
export const VALUE_NAMES = { feature: 'activation', error: 'error norm', logit: 'logit - mean logit', token: 'value', supernode: 'summed activation' };

/** A node's row: 0 embeddings, layer + 1 for features and errors, n_layers + 1 the targets. */
function row(n, nLayers) {
  if (n.kind === 'token') return 0;
  if (n.kind === 'logit') return nLayers + 1;
  return n.layer + 1;
}

/** Where each node sits: columns as wide as their busiest row needs, nodes in a cell by influence. */
function layout(graph, nLayers) {
  const P = graph.tokens.length;
  const cells = {};
  for (const n of graph.nodes) {
    const k = `${row(n, nLayers)}:${n.position}`;
    (cells[k] = cells[k] || []).push(n);
  }
  const widths = [];
  for (let p = 0; p < P; p++) {
    let most = 1;
    for (let r = 0; r <= nLayers + 1; r++) most = Math.max(most, (cells[`${r}:${p}`] || []).length);
    widths.push(Math.max(90, 18 * most + 12));
  }
  const left = 60;
  const top = 70; // room for the targets' slanted names
  const starts = [left];
  widths.forEach((w) => starts.push(starts[starts.length - 1] + w));
  // Layers with no node kept get a thin band: a deep model's graph would otherwise be mostly empty rows.
  const used = new Set(Object.keys(cells).map((k) => Number(k.split(':')[0])));
  const rowY = [];
  let y = top;
  for (let r = nLayers + 1; r >= 0; r--) {
    rowY[r] = y;
    y += used.has(r) ? 70 : 24;
  }
  const at = {};
  for (const [k, list] of Object.entries(cells)) {
    const [r, p] = k.split(':').map(Number);
    list.sort((a, b) => b.influence - a.influence);
    list.forEach((n, i) => { at[n.id] = [starts[p] + ((i + 0.5) * widths[p]) / list.length, rowY[r]]; });
  }
  return { at, starts, widths, rowY, width: starts[P] + 20, height: y + 30 };
}

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [a, v] of Object.entries(attrs)) e.setAttribute(a, v);
  parent.appendChild(e);
  return e;
}

function text(parent, x, y, s, anchor = 'middle') {
  const t = el('text', { x, y, class: 'axis', 'text-anchor': anchor, fill: '#666', 'font-size': 11 }, parent);
  t.textContent = s;
}

/**
 * Draw `graph` ({tokens, nodes, edges}) into `parent`. handlers: hover(node, event), leave(), click(node, event),
 * background(). Returns {svg, show({share, chosen})}: `share` (0-1] keeps the largest edges carrying that share
 * of the total |weight|; `chosen` (a Set of node ids, maybe empty) lights only their edges.
 */
export function drawGraph(parent, graph, nLayers, handlers = {}) {
  const L = nLayers;
  const place = layout(graph, L);
  const { at } = place;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('xmlns', NS);
  svg.setAttribute('width', place.width);
  svg.setAttribute('height', place.height);
  svg.setAttribute('font-family', 'system-ui, sans-serif');
  const rowName = (r) => (r === 0 ? 'emb' : r === L + 1 ? 'logit' : `L${r - 1}`);
  for (let r = 0; r <= L + 1; r++) text(svg, 8, place.rowY[r] + 4, rowName(r), 'start');
  graph.tokens.forEach((t, p) => text(svg, place.starts[p] + place.widths[p] / 2, place.height - 8, JSON.stringify(t)));
  const edgeLayer = el('g', {}, svg);
  const nodeLayer = el('g', {}, svg);
  const kept = graph.edges.filter((e) => at[e.source] && at[e.target]).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
  const maxW = Math.max(1e-12, ...kept.map((e) => Math.abs(e.weight)));
  const total = kept.reduce((s, e) => s + Math.abs(e.weight), 0) || 1;
  let before = 0;
  const edges = kept.map((e) => {
    const [x1, y1] = at[e.source];
    const [x2, y2] = at[e.target];
    const bend = (y1 - y2) / 3;
    const path = el('path', {
      class: 'edge',
      d: `M${x1},${y1} C${x1},${y1 - bend} ${x2},${y2 + bend} ${x2},${y2}`,
      fill: 'none',
      stroke: e.weight >= 0 ? EDGE_COLOURS.up : EDGE_COLOURS.down,
      'stroke-width': (0.4 + (5 * Math.abs(e.weight)) / maxW).toFixed(2),
      'stroke-opacity': 0.55,
      'stroke-linecap': 'round',
    }, edgeLayer);
    const item = { e, path, share: before / total };
    before += Math.abs(e.weight);
    return item;
  });
  const shapes = {};
  for (const n of graph.nodes) {
    const [x, y] = at[n.id];
    const big = n.kind === 'supernode' ? 9 : 6;
    const s = n.kind === 'feature'
      ? el('circle', { cx: x, cy: y, r: 6 }, nodeLayer)
      : el('rect', { x: x - big, y: y - big, width: 2 * big, height: 2 * big, rx: n.kind === 'error' ? 0 : 3 }, nodeLayer);
    s.setAttribute('class', `node ${n.kind}`);
    s.setAttribute('fill', FILL[n.kind]);
    s.setAttribute('stroke', '#333');
    s.dataset.id = n.id;
    if (handlers.hover) s.addEventListener('mousemove', (ev) => handlers.hover(n, ev));
    if (handlers.leave) s.addEventListener('mouseleave', () => handlers.leave());
    if (handlers.click) s.addEventListener('click', (ev) => { ev.stopPropagation(); handlers.click(n, ev); });
    shapes[n.id] = s;
    if (n.kind === 'logit') { // slanted: neighbouring targets' names would overlap side by side
      const name = JSON.stringify(n.label || n.id).slice(0, 14);
      const t = el('text', { x: x + 2, y: y - 10, fill: '#444', 'font-size': 11, transform: `rotate(-40 ${x + 2} ${y - 10})` }, nodeLayer);
      t.textContent = name;
    }
  }
  if (handlers.background) svg.addEventListener('click', () => handlers.background());
  parent.appendChild(svg);
  parent.scrollTop = parent.scrollHeight; // a scrolling canvas opens on the tokens, where the graph starts

  function show({ share = 1, chosen = new Set() } = {}) {
    const lit = new Set();
    let shown = 0;
    for (const it of edges) {
      const visible = it.share < share;
      const touches = !chosen.size || chosen.has(it.e.source) || chosen.has(it.e.target);
      it.path.style.display = visible ? '' : 'none';
      it.path.setAttribute('opacity', visible && !touches ? 0.06 : 1);
      if (visible) shown += 1;
      if (visible && touches) { lit.add(it.e.source); lit.add(it.e.target); }
    }
    for (const n of graph.nodes) {
      const keep = lit.has(n.id) || chosen.has(n.id) || (!chosen.size && (n.kind === 'token' || n.kind === 'logit'));
      shapes[n.id].setAttribute('opacity', keep ? 1 : 0.2);
      shapes[n.id].setAttribute('stroke-width', chosen.has(n.id) ? 2.5 : 0.7);
      shapes[n.id].setAttribute('stroke', chosen.has(n.id) ? '#000' : '#333');
    }
    svg.dataset.edgesShown = String(shown);
  }
  show();
  return { svg, show };
}
