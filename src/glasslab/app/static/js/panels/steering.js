// Steering: a vector from contrastive pairs added at one layer, baseline vs steered for several strengths.

import { fmt, h, showToken } from '../dom.js';
import { cached, job } from '../api.js';
import { chart } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { setting, setSetting, state } from '../store.js';
import { action, field, frame, progressText } from './common.js';
import { strengths } from './featureclamp.js';
import { chosenLayer, chosenSae, dashboardBody, saePicker, usable } from './sae.js';

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
  el.append(out);
  clamps(el);
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

function clampFeatures() {
  const features = setting('steering', 'features', '').split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (!features.length || features.some((f) => !Number.isInteger(f) || f < 0)) throw new Error('Features: feature numbers separated by commas, e.g. 3, 17.');
  return features;
}

/** The features' scale: the largest of their strongest activations in their dashboards' corpus scans (the
 * SAE features panel's dashboards, so one already opened costs nothing); null until all are here. */
function scaleOf(features) {
  const dashes = features.map((f) => cached('sae-dashboard', dashboardBody(f)));
  return dashes.every(Boolean) ? { max: Math.max(...dashes.map((d) => d.max_activation || 0)), tokens: dashes[0].tokens } : null;
}

async function measure(features, say = () => {}) {
  for (const f of features) await job('sae-dashboard', dashboardBody(f), (j) => say(`Reading feature ${f}'s strongest activation: ${progressText(j)}`));
  return scaleOf(features);
}

const ANY_SCALE = '0, 1\u00d7, 2\u00d7, 4\u00d7 the features\u2019 strongest activation';
const typedAmounts = () => setting('steering', 'amounts', '').trim();

/** The values typed by the user, else 0, 1x, 2x and 4x the features' strongest activation (`scale`): fixed
 * values such as 5 or 10 are far below real SAEs' activations (hundreds to thousands) and change nothing. */
function amountsFor(scale) {
  if (typedAmounts()) return parseScales(typedAmounts());
  if (!scale) throw new Error('Values: the features’ strongest activations are not measured yet.');
  if (!(scale.max > 0)) throw new Error('Values: these features never fired in their dashboards’ corpus scan; type the values to clamp them to.');
  return strengths(scale.max).map((s) => Number(s.amount.toPrecision(4)));
}

function clampBody(scale) {
  const features = clampFeatures();
  return {
    prompt: state.prompt, sae: chosenSae(), features, mode: 'value',
    amounts: amountsFor(scale === undefined ? scaleOf(features) : scale), max_new_tokens: Number(setting('steering', 'tokens', 12)),
  };
}

/** Offer in the empty values field (its placeholder, what a clamp then uses) 0, 1x, 2x and 4x the features'
 * strongest activation, measured first from their dashboards if needed, and say so in `note`; in place, never
 * changing what the user is typing. */
function offerDefaults(note, amounts) {
  let features;
  try {
    features = clampFeatures();
  } catch {
    note.textContent = '';
    amounts.placeholder = ANY_SCALE;
    return;
  }
  const asked = setting('steering', 'features', '');
  const which = `feature${features.length > 1 ? 's' : ''} ${features.join(', ')}`;
  const show = (scale) => {
    if (!amounts.isConnected || typedAmounts() || setting('steering', 'features', '') !== asked) return;
    note.textContent = scale.max > 0
      ? `Values: 0, 1\u00d7, 2\u00d7 and 4\u00d7 ${fmt(scale.max)}, the strongest activation of ${which} in ${scale.tokens.toLocaleString()} corpus tokens (their dashboards); type values to use your own.`
      : `${which[0].toUpperCase()}${which.slice(1)} never fired in ${scale.tokens.toLocaleString()} corpus tokens: type the values to clamp them to.`;
    amounts.placeholder = scale.max > 0 ? amountsFor(scale).join(', ') : 'type the values';
  };
  if (typedAmounts()) return;
  const known = scaleOf(features);
  if (known) {
    show(known);
    return;
  }
  note.textContent = `Measuring the strongest activation of ${which}\u2026`;
  measure(features, (msg) => { note.textContent = msg; }).then(show, (err) => { note.textContent = String(err.message || err); });
}

/** Feature clamps: set SAE features to fixed values while the model writes, one row per value. */
function clamps(el) {
  const box = h('section.clamps');
  el.append(box);
  box.append(h('h3', {}, 'Feature clamps (sparse autoencoder)'));
  if (!chosenSae()) {
    box.append(h('p.muted', {}, usable().length
      ? `No SAE on this machine reads layer ${chosenLayer()}, the layer chosen in the SAE features panel: pick another SAE here, or train one for that layer there.`
      : 'Feature clamps need a sparse autoencoder on this machine for the loaded model; none is available yet (the SAE features panel can train one).'));
    if (usable().length) box.append(h('div.controls.no-report', {}, saePicker('clamp')));
    return;
  }
  const bind = (name, c) => {
    c.addEventListener('input', () => setSetting('steering', name, c.value));
    return c;
  };
  const features = bind('features', h('input', { id: 'clamp-features', type: 'text', value: setting('steering', 'features', ''), placeholder: 'e.g. 3, 17' }));
  const amounts = bind('amounts', h('input', { id: 'clamp-amounts', type: 'text', value: setting('steering', 'amounts', ''), placeholder: ANY_SCALE }));
  const out = h('div.results');
  box.append(h('div.controls.no-report', {}, saePicker('clamp'),
    field('Features', features, 'SAE feature numbers to clamp (from the SAE features panel), separated by commas'),
    field('Values', amounts, 'The values to clamp the features to, one continuation each; 0 switches them off. Empty: 0, 1\u00d7, 2\u00d7 and 4\u00d7 the features\u2019 strongest activation in their dashboards'),
    action('Clamp features', 'Continue the prompt with the features held at each value, beside the unclamped text', async (say) => {
      const body = clampBody(typedAmounts() ? null : await measure(clampFeatures(), say));
      await job('sae-clamp', body, (j) => say(`Clamping: ${progressText(j)}`));
    }, out)));
  const note = h('p.small.clamp-defaults', { role: 'status' });
  box.append(note, out);
  features.addEventListener('change', () => offerDefaults(note, amounts)); // the default values follow the features
  offerDefaults(note, amounts);
  let body;
  try {
    body = clampBody();
  } catch {
    return;
  }
  const d = cached('sae-clamp', body);
  if (!d) return;
  out.append(h('table.compare.clamp-table', {}, h('caption', {}, `Features ${d.features.join(', ')} of ${d.sae} clamped to each value`),
    h('thead', {}, h('tr', {}, h('th', {}, 'value'), h('th', {}, 'continuation'), h('th', {}, 'next token'), h('th', {}, 'KL to baseline'))),
    h('tbody', {},
      h('tr.baseline', {}, h('th', {}, 'baseline (no clamp)'), h('td.text', {}, h('span.prompt-echo', {}, d.prompt), d.baseline), h('td', {}, showToken(d.baseline_top)), h('td', {}, '0')),
      ...d.rows.map((r) => h('tr', {}, h('th', {}, `value ${r.amount}`), h('td.text', {}, h('span.prompt-echo', {}, d.prompt), r.completion), h('td', {}, showToken(r.next_top)), h('td', {}, fmt(r.kl)))))));
}
