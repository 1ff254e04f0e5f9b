// Head roles: previous-token, duplicate-token, induction and sink scores of every head.

import { fmt, h, headName, plural, short } from '../dom.js';
import { cached, call, job } from '../api.js';
import { chart } from '../chart.js';
import { state, update } from '../store.js';
import { ablateBody } from './ablation.js';
import { button, frame, need, progressText, refresh } from './common.js';

const ROLES = [
  ['previous_token', 'previous-token'],
  ['duplicate_token', 'duplicate-token'],
  ['induction', 'induction'],
  ['sink', 'attention sink'],
];
// Repeated random sequences of 50 tokens, shorter for toy vocabularies that have too few ordinary tokens.
export const rolesBody = () => ((state.model?.vocab_size ?? 1e6) >= 1000 ? {} : { seq_len: 12, n_seqs: 8 });

export function render(root) {
  const el = frame(root, 'roles');
  const d = need(el, 'head roles on repeated random tokens (a few seconds)', () => cached('head-roles', rolesBody()), () => job('head-roles', rolesBody(), (j) => {
    const line = el.querySelector('.loading');
    if (line) line.textContent = `Scoring heads on repeated random tokens: ${progressText(j)}`;
  }));
  if (!d) return;
  el.append(h('p.facts', {}, `Scored on ${plural(d.n_seqs, 'sequence')} of ${plural(d.seq_len, 'random token')}, each repeated twice (seed ${d.seed}).`));
  if (state.layer !== null && state.head !== null) {
    const name = headName(state.layer, state.head);
    el.append(h('p.controls', {}, `Selected: ${name}. `, button(`Ablate ${name}`, `Open Ablation with only ${name} marked and ablate it`, () => {
      update({ ablate: [`${state.layer}.${state.head}`], panel: 'ablation' });
      call('ablate', ablateBody()).then(refresh, refresh);
    }, 'primary ablate-this')));
  }
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
