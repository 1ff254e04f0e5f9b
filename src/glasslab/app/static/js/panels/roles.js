// Head roles: previous-token, duplicate-token, induction and sink scores of every head.

import { fmt, h, headName, plural, short } from '../dom.js';
import { cached, job } from '../api.js';
import { chart } from '../chart.js';
import { state, update } from '../store.js';
import { frame, need, progressText } from './common.js';

const ROLES = [
  ['previous_token', 'previous-token'],
  ['duplicate_token', 'duplicate-token'],
  ['induction', 'induction'],
  ['sink', 'attention sink'],
];
// Repeated random sequences of 50 tokens, shorter for toy vocabularies that have too few ordinary tokens.
const body = () => ((state.model?.vocab_size ?? 1e6) >= 1000 ? {} : { seq_len: 12, n_seqs: 8 });

export function render(root) {
  const el = frame(root, 'roles');
  const d = need(el, 'head roles on repeated random tokens (a few seconds)', () => cached('head-roles', body()), () => job('head-roles', body(), (j) => {
    const line = el.querySelector('.loading');
    if (line) line.textContent = `Scoring heads on repeated random tokens: ${progressText(j)}`;
  }));
  if (!d) return;
  el.append(h('p.facts', {}, `Scored on ${plural(d.n_seqs, 'sequence')} of ${plural(d.seq_len, 'random token')}, each repeated twice (seed ${d.seed}).`));
  const row = h('div.row');
  el.append(row);
  for (const [key, label] of ROLES) {
    const role = d.random[key];
    if (!role) continue;
    const nH = role.scores[0].length;
    const col = h('div.col');
    row.append(col);
    chart(col, {
      kind: 'heatmap',
      title: `${label} score`,
      rows: role.scores.map((_, l) => `L${l}`),
      cols: Array.from({ length: nH }, (_, j) => `H${j}`),
      values: role.scores,
      lo: 0,
      hi: 1,
      text: (i, j) => short(role.scores[i][j]),
      hover: (i, j) => `${headName(i, j)}: ${label} score ${fmt(role.scores[i][j], 3)}. Click to select this head.`,
      rowTitle: 'layer',
      colTitle: 'head',
      valueLabel: 'mean attention on the role\'s target (0..1)',
      cellW: Math.max(26, Math.min(40, Math.floor(200 / nH))),
      cellH: 16,
      onClick: (i, j) => update({ layer: i, head: j }),
    }, { json: role });
    col.append(h('p.muted', {}, `Top: ${role.top.slice(0, 3).map((t) => `${headName(t.layer, t.head)} (${fmt(t.score, 2)})`).join(', ')}`));
  }
}
