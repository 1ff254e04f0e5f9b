// Direct logit attribution: the predicted token's logit as a running sum over layers, and each head's share.

import { fmt, h, headName, plural, short, showToken } from '../dom.js';
import { chart } from '../chart.js';
import { dlaAt, fetchDla } from '../data.js';
import { position, state, update } from '../store.js';
import { frame, need } from './common.js';

export function render(root) {
  const el = frame(root, 'dla');
  const p = position();
  const d = need(el, `direct logit attribution at position ${p}`, () => dlaAt(p), () => fetchDla(p));
  if (!d) return;
  el.append(h('p.facts', {}, 'Target ', h('code', {}, showToken(d.target.token)), ` at position ${d.position}: model's logit ${fmt(d.logit)}, `
    + `sum of the shares ${fmt(d.sum_of_contributions)} (difference ${fmt(d.error, 2)}).`));
  const labels = ['embedding'];
  const values = [d.embed];
  d.attn.forEach((a, i) => {
    labels.push(`L${i} attention`, `L${i} MLP`);
    values.push(a, d.mlp[i]);
  });
  const constants = Object.values(d.constants || {}).reduce((a, b) => a + b, 0) + (Array.isArray(d.attn_bias) ? d.attn_bias.reduce((a, b) => a + b, 0) : d.attn_bias || 0);
  if (constants) {
    labels.push('biases and constants');
    values.push(constants);
  }
  chart(el, {
    kind: 'waterfall',
    title: `Running sum of each layer's direct share of the ${showToken(d.target.token)} logit`,
    labels,
    values,
    total: { label: 'sum = logit', value: d.sum_of_contributions },
    valueLabel: 'logit units (orange pushes the token up, blue down)',
    width: 680,
  }, { json: d });
  const nH = d.heads[0]?.length ?? 0;
  const flat = [];
  d.heads.forEach((row, l) => row.forEach((v, hh) => flat.push([l, hh, v])));
  chart(el, {
    kind: 'heatmap',
    title: 'Each head\'s direct share (click a head to select it in every panel)',
    rows: d.heads.map((_, l) => `L${l}`),
    cols: Array.from({ length: nH }, (_, j) => `H${j}`),
    values: d.heads,
    diverging: true,
    text: (i, j) => short(d.heads[i][j]),
    hover: (i, j) => `${headName(i, j)}: ${fmt(d.heads[i][j], 4)} logit units`,
    rowTitle: 'layer',
    colTitle: 'head',
    valueLabel: 'direct share (logit units)',
    cellW: Math.max(28, Math.min(48, Math.floor(300 / nH))),
    cellH: 18,
    selected: state.layer !== null ? { row: state.layer, col: state.head } : undefined,
    onClick: (i, j) => update({ layer: i, head: j }),
  }, { json: d.heads });
  flat.sort((a, b) => Math.abs(b[2]) - Math.abs(a[2]));
  const top = flat.slice(0, 12);
  const rest = flat.slice(12).reduce((s, x) => s + x[2], 0);
  chart(el, {
    kind: 'waterfall',
    title: 'The heads with the largest shares, added one by one',
    labels: [...top.map(([l, hh]) => headName(l, hh)), `other ${plural(flat.length - top.length, 'head')}`],
    values: [...top.map((x) => x[2]), rest],
    total: { label: 'all heads', value: flat.reduce((s, x) => s + x[2], 0) },
    valueLabel: 'logit units',
    width: 680,
  });
}
