// Ablation: mark heads in the grid, knock them out together and compare the metric; or sweep every head.

import { componentName, fmt, h, headName, pct, plural, pp, showToken, short, signed } from '../dom.js';
import { cached, call, job } from '../api.js';
import { chart } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { Q, get, prediction } from '../data.js';
import { position, setting, setSetting, state, update } from '../store.js';
import { action, button, field, frame, progressText } from './common.js';
import { inductionDemo } from './induction.js';

// The metric: the probability of the token the model predicts at the selected position (how a newcomer reads
// "the prediction changed"), or its logit.
const metric = () => setting('ablation', 'metric', 'prob');

export function ablateBody() {
  return {
    prompt: state.prompt, heads: state.ablate.map((k) => k.split('.').map(Number)), position: position(),
    how: setting('ablation', 'how', 'zero'), metric: metric(),
  };
}

function sweepBody() {
  return { prompt: state.prompt, position: position(), how: setting('ablation', 'how', 'zero'), metric: metric() };
}

function value(result, x) {
  return result.metric_kind === 'prob' ? pct(x) : fmt(x);
}

/** A change of the metric: percentage points for a probability (its unit named), else a signed score. */
function change(kind, d) {
  return kind === 'prob' ? pp(d) : signed(d);
}

const changeUnit = (kind) => (kind === 'prob' ? 'percentage points (pp)' : 'logit units');

function toggle(layer, head) {
  const key = `${layer}.${head}`;
  const next = state.ablate.includes(key) ? state.ablate.filter((k) => k !== key) : [...state.ablate, key];
  update({ ablate: next, layer, head });
}

export function render(root) {
  const el = frame(root, 'ablation');
  const ov = get(Q.overview());
  const nL = state.model?.n_layers ?? ov?.attention.n_layers ?? 0;
  const nH = state.model?.n_heads ?? ov?.attention.n_heads ?? 0;
  const p = position();
  const how = h('select', { id: 'ablate-how' }, ...['zero', 'mean'].map((v) => h('option', { value: v, selected: v === setting('ablation', 'how', 'zero') }, v)));
  how.addEventListener('change', () => setSetting('ablation', 'how', how.value));
  const measure = h('select', { id: 'ablate-metric' }, ...[['prob', 'probability'], ['logit', 'logit']].map(([v, t]) => h('option', { value: v, selected: v === metric() }, t)));
  measure.addEventListener('change', () => { setSetting('ablation', 'metric', measure.value); update({ ablate: [...state.ablate] }); });
  const out = h('div.results.ablation-results');
  const pred = prediction(p);
  el.append(h('div.controls.no-report', {},
    field('Ablation', how, CONTROLS.how),
    field('Measure', measure, 'What to compare: the probability of the predicted token, or its logit (the score before the softmax)'),
    action('Ablate selected heads', 'Run the model with the marked heads switched off and compare the metric', async () => {
      if (!state.ablate.length) throw new Error('Mark at least one head in the grid first (click a cell).');
      await call('ablate', ablateBody());
    }, out),
    action('Sweep every head', 'Ablate each head alone (one batched run) and colour the grid by the change', async (say) => {
      await job('ablation-sweep', sweepBody(), (j) => say(`Sweeping every head: ${progressText(j)}`));
    }, out),
    button('Clear marks', 'Unmark every head', () => update({ ablate: [] }), 'small')));
  inductionDemo(el); // near the top: the tutorial's step runs it, and its card covers the panel's bottom
  el.append(h('p.muted', {}, `Metric: the ${metric() === 'prob' ? 'probability' : 'logit'} of the top prediction after position ${p}`,
    pred ? [' (', h('code', {}, showToken(pred.top[0].token)), ` at ${pct(pred.top[0].probability)})`] : '', '. Marked heads: ',
    h('strong#ablate-marked', {}, state.ablate.length ? state.ablate.map((k) => headName(...k.split('.'))).join(', ') : 'none')));
  const sweep = cached('ablation-sweep', sweepBody());
  const marked = new Set(state.ablate);
  const kind = sweep?.metric_kind ?? metric();
  // A probability's changes are drawn and written in percentage points, so cells, legend and text agree.
  const shown = sweep && kind === 'prob' ? sweep.effect.map((row) => row.map((x) => 100 * x)) : sweep?.effect;
  if (nL && nH) {
    const values = sweep ? shown : Array.from({ length: nL }, (_, l) => Array.from({ length: nH }, (_, hh) => (marked.has(`${l}.${hh}`) ? 1 : 0)));
    chart(el, {
      kind: 'heatmap',
      title: sweep ? 'Change of the metric when each head alone is ablated (x = marked)' : 'Heads (click to mark for ablation; marked = bright)',
      rows: Array.from({ length: nL }, (_, l) => `L${l}`),
      cols: Array.from({ length: nH }, (_, j) => `H${j}`),
      values,
      diverging: Boolean(sweep),
      lo: sweep ? undefined : 0,
      hi: sweep ? undefined : 1,
      text: (i, j) => `${marked.has(`${i}.${j}`) ? '\u00d7 ' : ''}${sweep ? short(shown[i][j]) : ''}`,
      hover: (i, j) => `${headName(i, j)}${marked.has(`${i}.${j}`) ? ' (marked)' : ''}${sweep ? `: ablating it alone changes the metric by ${change(kind, sweep.effect[i][j])}` : ''}. Click to ${marked.has(`${i}.${j}`) ? 'unmark' : 'mark'}.`,
      rowTitle: 'layer',
      colTitle: 'head',
      valueLabel: sweep ? `change of the metric (ablated \u2212 clean), ${changeUnit(kind)}` : 'marked',
      cellW: Math.max(34, Math.min(52, Math.floor(320 / nH))),
      cellH: 18,
      onClick: (i, j) => toggle(i, j),
      tooltip: 'Click heads (or arrow keys + Enter) to mark or unmark them for ablation',
    }, { json: sweep || { marked: state.ablate } });
  }
  el.append(out);
  const result = state.ablate.length ? cached('ablate', ablateBody()) : null;
  if (result) {
    const names = result.components.map(componentName);
    out.append(h('p.facts.ablation-result', {}, `${result.metric}: clean ${value(result, result.clean)} \u2192 ablated ${value(result, result.ablated)} `,
      h('strong.ablation-change', { title: `ablated minus clean, in ${changeUnit(result.metric_kind)}` }, `(change ${change(result.metric_kind, result.difference)})`),
      ` with ${names.join(', ')} ${result.how}-ablated.`));
    chart(out, {
      kind: 'bars',
      title: 'Metric with and without the marked heads',
      labels: ['clean', `ablated (${plural(result.components.length, 'head')})`],
      values: [result.clean, result.ablated],
      format: (x) => value(result, x),
      valueLabel: result.metric,
    }, { json: result });
    if (result.predictions) predictionsTable(out, result.predictions);
  }
  if (sweep) {
    out.append(h('p.muted', {}, `Sweep: ${plural(sweep.forward_passes, 'batched forward pass', 'batched forward passes')}; strongest: ${sweep.ranked.slice(0, 5).map((r) => `${componentName(r.component)} ${change(kind, r.effect)}`).join(', ')}.`));
  }
}

/** Top predictions clean vs ablated, when the server sends them. */
function predictionsTable(out, preds) {
  const rows = Math.max(preds.clean?.length ?? 0, preds.ablated?.length ?? 0);
  out.append(h('table.compare', {}, h('caption', {}, 'Top predictions, clean vs ablated'),
    h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'clean'), h('th', {}, 'ablated'))),
    h('tbody', {}, ...Array.from({ length: rows }, (_, i) => h('tr', {}, h('td', {}, String(i + 1)),
      h('td', {}, preds.clean[i] ? `${showToken(preds.clean[i].token)} ${pct(preds.clean[i].probability)}` : ''),
      h('td', {}, preds.ablated[i] ? `${showToken(preds.ablated[i].token)} ${pct(preds.ablated[i].probability)}` : ''))))));
}
