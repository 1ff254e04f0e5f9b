// Attention: every head summarised in one grid, one head's full pattern, and what the selected token reads.

import { fmt, h, headName, short, showToken } from '../dom.js';
import { chart } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { Q, attentionAt, fetchQ, get } from '../data.js';
import { position, state, update } from '../store.js';
import { field, frame, need } from './common.js';

const STATS = {
  max: ['row_max', 'focus: mean of each row\'s largest weight (1 = one token)'],
  mean: ['distance', 'mean distance back, in tokens'],
  entropy: ['entropy_nats', 'entropy of each row, nats (0 = one token)'],
};

// Patterns seen so far, per prompt: "L.H" -> [query][key]. Any attention answer adds its head's pattern.
const patterns = new Map();
let patternsPrompt = null;

export function learnPatterns(result) {
  if (!result) return;
  if (patternsPrompt !== result.prompt) {
    patterns.clear();
    patternsPrompt = result.prompt;
  }
  if (result.pattern) patterns.set(`${result.layer}.${result.head}`, result.pattern);
  for (const item of result.patterns || []) patterns.set(`${item.layer}.${item.head}`, item.pattern); // all heads, when sent
}

export function patternOf(layer, head) {
  return patternsPrompt === state.prompt ? patterns.get(`${layer}.${head}`) ?? null : null;
}

/** The selected head: the user's choice, else the one the server picked as most focused. */
export function selectedHead() {
  const ov = get(Q.overview())?.attention;
  if (state.layer !== null && state.head !== null) return [state.layer, state.head];
  return ov ? [ov.layer, ov.head] : [0, 0];
}

function fetchPattern(layer, head) {
  const n = state.tokens.length;
  const q = n <= 64 ? Q.attentionAll(n - 1) : Q.attention(position(), layer, head); // all heads at once when allowed
  return fetchQ(q).then(learnPatterns);
}

export function render(root) {
  const el = frame(root, 'attention');
  const p = position();
  const ov = get(Q.overview())?.attention;
  learnPatterns(ov);
  const base = need(el, 'the attention summaries', () => ov, () => fetchQ(Q.overview()));
  if (!base) return;
  const [layer, head] = selectedHead();
  const agg = h('select', { id: 'attn-agg', 'aria-label': 'Summary shown in the head grid' },
    ...Object.keys(STATS).map((k) => h('option', { value: k, selected: k === state.agg }, k)));
  agg.addEventListener('change', () => update({ agg: agg.value }));
  el.append(h('div.controls.no-report', {}, field('Summarise each head by', agg, CONTROLS.agg),
    h('span.muted', {}, `Selected head: ${headName(layer, head)} \u00b7 query token ${p} `, h('code', {}, showToken(state.tokens[p]?.token ?? '')))));
  const [key, label] = STATS[state.agg];
  const nL = base.n_layers;
  const nH = base.n_heads;
  const grid = Array.from({ length: nL }, () => new Array(nH).fill(NaN));
  const byHead = new Map(base.summaries.map((s) => [`${s.layer}.${s.head}`, s]));
  for (const s of base.summaries) grid[s.layer][s.head] = s[key];
  const sliding = base.sliding_windows || [];
  const grids = h('div.row');
  el.append(grids);
  const left = h('div.col');
  const right = h('div.col');
  grids.append(left, right);
  chart(left, {
    kind: 'heatmap',
    title: `Every head (${state.agg}): ${label}`,
    rows: Array.from({ length: nL }, (_, i) => `L${i}${sliding[i] ? ' (window)' : ''}`),
    cols: Array.from({ length: nH }, (_, j) => `H${j}`),
    values: grid,
    rowTitle: 'layer',
    colTitle: 'head',
    valueLabel: label,
    cellW: Math.max(28, Math.min(48, Math.floor(300 / nH))),
    cellH: 18,
    text: (i, j) => short(grid[i][j]),
    hover: (i, j) => {
      const s = byHead.get(`${i}.${j}`);
      return `${headName(i, j)}: focus ${fmt(s.row_max)}, mean distance ${fmt(s.distance, 2)} tokens, entropy ${fmt(s.entropy_nats)} nats, `
        + `first-token weight ${fmt(s.first_token)}. Click for its full pattern.`;
    },
    selected: { row: layer, col: head },
    onClick: (i, j) => update({ layer: i, head: j }),
    tooltip: 'Click a head (or move with the arrow keys and press Enter) to see its full pattern',
  }, { json: base.summaries });
  const pattern = patternOf(layer, head) ?? need(right, `the pattern of ${headName(layer, head)}`, () => null, () => fetchPattern(layer, head));
  if (pattern) {
    const labels = state.tokens.map((t) => `${t.position} ${showToken(t.token)}`);
    chart(right, {
      kind: 'heatmap',
      title: `${headName(layer, head)}: how much each token (row) reads each earlier token (column)`,
      rows: labels,
      cols: labels,
      values: pattern,
      lo: 0,
      hi: 1,
      rowTitle: 'reading token (query)',
      colTitle: 'token read (key)',
      valueLabel: 'attention weight',
      hover: (i, j) => (j > i ? `${labels[i]} cannot read the later token ${labels[j]}`
        : `${labels[i]} reads ${labels[j]}: ${fmt(pattern[i][j], 4)}`),
      selected: { row: p },
      onClick: (i) => update({ position: i }),
      tooltip: 'Hover a cell for its weight; click a row to select that token',
    }, { json: { layer, head, tokens: state.tokens.map((t) => t.token), pattern } });
  }
  // What the selected token reads in each head of the selected layer.
  const reads = readsAt(p, layer, nH);
  if (reads) {
    const table = h('table.reads', {}, h('caption', {}, `What token ${p} reads in each head of layer ${layer}`),
      h('thead', {}, h('tr', {}, h('th', {}, 'head'), h('th', {}, 'heaviest keys (position token: weight)'))),
      h('tbody', {}, ...reads.map(([hh, keys]) => h('tr', { class: hh === head ? 'selected' : '' }, h('th', {}, headName(layer, hh)),
        h('td', {}, keys.map((k) => `${k.position} ${showToken(k.token)}: ${fmt(k.weight, 3)}`).join('   '))))));
    el.append(table);
  } else {
    need(el, `what token ${p} reads`, () => null, () => fetchQ(Q.attention(p)));
  }
  el.append(h('p.muted.no-report', {}, 'Tip: hover a token in the strip above to colour the strip by what that token reads in the selected head.'));
}

/** [(head, top keys)] for query p in `layer`: from known patterns, else from an attention answer at p. */
function readsAt(p, layer, nH) {
  const out = [];
  for (let hh = 0; hh < nH; hh++) {
    const pat = patternOf(layer, hh);
    if (!pat) break;
    const row = pat[p].map((w, k) => ({ position: k, token: state.tokens[k]?.token ?? '', weight: w })).filter((r) => r.weight > 0);
    row.sort((a, b) => b.weight - a.weight);
    out.push([hh, row.slice(0, 5)]);
  }
  if (out.length === nH) return out;
  const at = attentionAt(p);
  if (!at) return null;
  return at.reads.filter((r) => r.layer === layer).map((r) => [r.head, r.keys]);
}
