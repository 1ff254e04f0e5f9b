// Steering: a vector from contrastive pairs added at one layer, baseline vs steered for several strengths.

import { fmt, h } from '../dom.js';
import { cached, job } from '../api.js';
import { chart } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { setting, setSetting, state } from '../store.js';
import { action, field, frame, progressText } from './common.js';

const DEFAULT_PAIRS = 'I love this, it is wonderful | I hate this, it is terrible\nWhat a great day | What an awful day';

function parsePairs(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((line, i) => {
    const parts = line.split('|').map((s) => s.trim());
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new Error(`Pair ${i + 1}: write "positive text | negative text".`);
    return parts;
  });
}

function parseScales(text) {
  const xs = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!xs.length || xs.some((x) => !Number.isFinite(x))) throw new Error('Strengths: numbers separated by commas, e.g. -8, -4, 4, 8.');
  return xs;
}

export function steerBody() {
  const nL = state.model?.n_layers ?? 12;
  return {
    prompt: state.prompt,
    pairs: parsePairs(setting('steering', 'pairs', DEFAULT_PAIRS)),
    layer: Number(setting('steering', 'layer', Math.floor(nL / 3))),
    scales: parseScales(setting('steering', 'scales', '-8, -4, 4, 8')),
    max_new_tokens: Number(setting('steering', 'tokens', 12)),
  };
}

export function render(root) {
  const el = frame(root, 'steering');
  const nL = state.model?.n_layers ?? 12;
  const bind = (name, c) => {
    c.addEventListener('input', () => setSetting('steering', name, c.value));
    return c;
  };
  const pairs = bind('pairs', h('textarea', { id: 'steer-pairs', rows: 3, cols: 60 }));
  pairs.value = setting('steering', 'pairs', DEFAULT_PAIRS);
  const layer = bind('layer', h('input', { id: 'steer-layer', type: 'number', min: 0, max: nL - 1, value: setting('steering', 'layer', Math.floor(nL / 3)) }));
  const scales = bind('scales', h('input', { id: 'steer-scales', type: 'text', value: setting('steering', 'scales', '-8, -4, 4, 8') }));
  const tokens = bind('tokens', h('input', { id: 'steer-tokens', type: 'number', min: 1, max: 100, value: setting('steering', 'tokens', 12) }));
  const out = h('div.results');
  el.append(h('div.controls.no-report', {},
    field('Contrast pairs (positive | negative)', pairs, CONTROLS.pairs),
    field('Layer', layer, CONTROLS.layer),
    field('Strengths', scales, CONTROLS.scales),
    field('New tokens', tokens, 'How many tokens each continuation writes'),
    action('Steer', 'Build the vector from the pairs and continue the prompt at every strength, side by side', async (say) => {
      await job('steer', steerBody(), (j) => say(`Steering: ${progressText(j)}`));
    }, out)));
  el.append(h('p.muted.no-report', {}, 'Feature clamps (setting a sparse-autoencoder feature to a value) appear here once the server offers SAEs for this model.'));
  el.append(out);
  let body;
  try {
    body = steerBody();
  } catch {
    return;
  }
  const d = cached('steer', body);
  if (!d) {
    out.append(h('p.muted', {}, 'Not steered yet: press Steer.'));
    return;
  }
  out.append(h('p.facts', {}, `Vector at ${d.vector.hook} (${d.vector.method}, norm ${fmt(d.vector.norm)}).`));
  const rows = [{ label: 'baseline (no steering)', ...d.baseline }, ...d.steered.map((s) => ({ label: `scale ${s.scale}`, ...s }))];
  out.append(h('table.compare.steer-table', {}, h('caption', {}, `Continuations of "${d.prompt}"`),
    h('thead', {}, h('tr', {}, h('th', {}, 'strength'), h('th', {}, 'continuation'), h('th', {}, 'projection'))),
    h('tbody', {}, ...rows.map((r) => h('tr', { class: r.scale === null || r.scale === undefined ? 'baseline' : '' },
      h('th', {}, r.label), h('td.text', {}, h('span.prompt-echo', {}, d.prompt), r.completion), h('td', {}, fmt(r.projection)))))));
  const measured = rows.filter((r) => Number.isFinite(r.projection)); // no projection without new tokens
  chart(out, {
    kind: 'bars',
    title: 'How far each continuation sits along the vector (projection)',
    labels: measured.map((r) => r.label),
    values: measured.map((r) => r.projection),
    valueLabel: d.projection_measure || 'projection',
  }, { json: d });
}
