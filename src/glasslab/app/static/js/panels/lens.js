// Logit lens: layers x positions (top token per cell) and layers x candidate tokens at the selected position.

import { fmt, h, pct, showToken, short } from '../dom.js';
import { chart } from '../chart.js';
import { fetchLens, lensAt, lensWindow } from '../data.js';
import { position, state, update } from '../store.js';
import { frame, need, refresh } from './common.js';
import { render as charts } from '../chart.js';

function layerName(layer, nLayers) {
  if (layer < 0) return 'embed';
  return layer === nLayers - 1 ? `L${layer} (output)` : `L${layer}`;
}

let filling = null; // the window being completed, so re-renders do not start a second fetch loop

/** Fetch the missing columns of the window one by one, nearest to the selection first. */
function fill(win, p, rerender) {
  const key = `${state.prompt}|${win[0]}|${win.length}`;
  if (filling === key) return;
  filling = key;
  const missing = win.filter((q) => !lensAt(q)).sort((a, b) => Math.abs(a - p) - Math.abs(b - p));
  (async () => {
    for (const q of missing) {
      if (filling !== key) return;
      try {
        await fetchLens(q);
      } catch {
        break;
      }
      if (state.panel === 'lens') rerender();
    }
    if (filling === key) filling = null;
  })();
}

export function render(root) {
  const el = frame(root, 'lens');
  const p = position();
  const cand = need(el, `the logit lens at position ${p}`, () => lensAt(p), () => fetchLens(p));
  if (!cand) return;
  const nL = cand.layers.length - 1;
  const layers = [...cand.layers].reverse(); // the output on top, the embeddings at the bottom
  const win = lensWindow(p);
  const columns = win.map((q) => lensAt(q));
  const missing = columns.filter((c) => !c).length;
  if (missing && !charts.report) fill(win, p, refresh);
  const cols = win.map((q) => `${q} ${showToken(state.tokens[q]?.token ?? '')}`);
  const top = (i, j) => {
    const c = columns[j];
    return c ? c.layers[c.layers.length - 1 - i].positions[0].top : null;
  };
  const note = [];
  if (win.length < state.tokens.length) note.push(`positions ${win[0]}\u2013${win.at(-1)} of ${state.tokens.length} (the window follows the selected token)`);
  if (missing) note.push(`${missing} column${missing > 1 ? 's' : ''} still being decoded`);
  if (note.length) el.append(h('p.muted.lens-note', {}, `Showing ${note.join('; ')}.`));
  chart(el, {
    kind: 'heatmap',
    title: 'Top guess of every layer (rows) at every position (columns)',
    rows: layers.map((l) => layerName(l.layer, nL)),
    cols,
    values: layers.map((_, i) => win.map((__, j) => top(i, j)?.[0].probability ?? NaN)),
    lo: 0,
    hi: 1,
    text: (i, j) => (top(i, j) ? showToken(top(i, j)[0].token) : '\u2026'),
    hover: (i, j) => (top(i, j) ? `${layerName(layers[i].layer, nL)}, after ${cols[j]}: ${top(i, j).map((t) => `${showToken(t.token)} ${pct(t.probability)}`).join(', ')}`
      : `${cols[j]}: not decoded yet`),
    rowTitle: 'layer (output on top)',
    colTitle: 'position',
    valueLabel: 'probability of the top guess',
    selected: { col: win.indexOf(p) },
    onClick: (i, j) => update({ position: win[j] }),
    cellW: Math.max(40, Math.min(64, Math.floor(1000 / Math.max(1, cols.length)))),
    tooltip: 'Hover a cell for the layer\'s top five guesses; click a column to select that position',
  }, { json: columns.filter(Boolean) });
  const toks = cand.candidates.map((c) => showToken(c.token));
  chart(el, {
    kind: 'heatmap',
    title: `How likely each candidate is at every layer, after position ${p}`,
    rows: layers.map((l) => layerName(l.layer, nL)),
    cols: toks,
    values: layers.map((l) => l.candidate_probability),
    lo: 0,
    hi: 1,
    text: (i, j) => short(layers[i].candidate_probability[j]),
    hover: (i, j) => `${layerName(layers[i].layer, nL)}: ${toks[j]} ${pct(layers[i].candidate_probability[j] ?? NaN)}`,
    rowTitle: 'layer (output on top)',
    colTitle: 'candidate token (the model\'s top 5)',
    valueLabel: 'probability',
    cellW: 64,
  }, { json: cand });
}
