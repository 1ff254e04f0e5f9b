// SAE features per token, a feature's dashboard and links to Neuronpedia. The SAEs come from GET /api/saes
// (shipped, trained into the store, or known hub releases); only those on disk can run here, offline.

import { fmt, h, pct, showToken } from '../dom.js';
import { call, cached, job } from '../api.js';
import { chart } from '../chart.js';
import { position, setting, setSetting, state } from '../store.js';
import { field, frame, need, progressText, refresh } from './common.js';

export const sae = { list: [] }; // GET /api/saes -> saes, filled when the model is loaded

export function usable() {
  return sae.list.filter((s) => s.on_disk);
}

export function chosenSae() {
  const names = usable().map((s) => s.name);
  const pick = setting('sae', 'name', names[0]);
  return names.includes(pick) ? pick : names[0] ?? null;
}

export function saePicker(panel) {
  const saes = usable();
  const select = h('select', { id: `${panel}-sae` }, ...saes.map((s) => h('option', { value: s.name, selected: s.name === chosenSae() }, `${s.name} (${s.hook}, ${s.d_sae} features)`)));
  select.addEventListener('change', () => { setSetting('sae', 'name', select.value); refresh(); });
  return field('Sparse autoencoder', select, 'Which SAE reads the activations (only SAEs on this machine are listed)');
}

export function noSae(el) {
  const hub = sae.list.filter((s) => !s.on_disk);
  el.append(h('p.empty-state', { role: 'note' }, `No SAE available for this model yet (${state.model?.name ?? 'the loaded model'}). `,
    hub.length ? `${hub.length} SAE${hub.length > 1 ? 's are' : ' is'} known for it on the Hugging Face hub (${hub.map((s) => s.name).join(', ')}) but not on this machine; download one on a connected machine to use it here. ` : '',
    'With an SAE on disk, the most active features at the selected token appear here, each with a dashboard and a link to Neuronpedia.'));
}

const featuresBody = () => ({ prompt: state.prompt, sae: chosenSae(), top: 10 });
const dashboardBody = (feature) => ({ feature, sae: chosenSae(), sequences: 32, seq_len: 64, k: 10 });

export function render(root) {
  const el = frame(root, 'sae');
  if (!chosenSae()) {
    noSae(el);
    return;
  }
  el.append(h('div.controls.no-report', {}, saePicker('sae')));
  const p = position();
  const d = need(el, 'the SAE features of the prompt', () => cached('sae-features', featuresBody()), () => call('sae-features', featuresBody()));
  if (!d) return;
  const tok = (d.tokens || []).find((t) => t.position === p);
  if (!tok) {
    el.append(h('p.muted', {}, `The SAE at ${d.hook} reports nothing at position ${p} (SAEs usually skip the BOS token): select another token.`));
    return;
  }
  el.append(h('p.facts.sae-facts', {}, `${d.sae_name ?? d.sae} at ${d.hook}: ${tok.l0} features fire at position ${p} `, h('code', {}, showToken(tok.token)),
    `; the SAE misses ${pct(tok.relative_error)} of the activation (cosine ${fmt(tok.cosine)}).`));
  const feature = Number(setting('sae', 'feature', tok.top[0]?.feature ?? -1));
  chart(el, {
    kind: 'bars',
    title: `Most active features at position ${p} (click one for its dashboard)`,
    labels: tok.top.map((f) => `F${f.feature}${f.label ? ` ${f.label}` : ''}`),
    values: tok.top.map((f) => f.activation),
    selected: tok.top.findIndex((f) => f.feature === feature),
    valueLabel: 'feature activation',
  }, { json: d, onBar: (i) => { setSetting('sae', 'feature', tok.top[i].feature); refresh(); } });
  if (d.neuronpedia) {
    el.append(h('p.small', {}, 'On Neuronpedia (a public website, needs internet): ', ...tok.top.map((f) => [h('a', {
      href: d.neuronpedia.replace('{feature}', f.feature), target: '_blank', rel: 'noopener noreferrer', title: `Feature ${f.feature} on Neuronpedia`,
    }, `F${f.feature}`), ' '])));
  }
  if (feature >= 0) dashboard(el, feature);
}

function dashboard(el, feature) {
  const body = dashboardBody(feature);
  const box = h('section.dashboard');
  el.append(box);
  box.append(h('h3', {}, `Feature ${feature}: dashboard`));
  const dash = need(box, `the dashboard of feature ${feature} (scanning the built-in corpus)`, () => cached('sae-dashboard', body), () => job('sae-dashboard', body, (j) => {
    const line = box.querySelector('.loading');
    if (line) line.textContent = `Scanning the corpus for feature ${feature}: ${progressText(j)}`;
  }));
  if (!dash) return;
  box.append(h('p.facts.dashboard-facts', {}, `Fires on ${pct(dash.density ?? 0)} of tokens; strongest activation ${fmt(dash.max_activation)}.`));
  const contexts = dash.contexts || [];
  if (contexts.length) {
    box.append(h('table.compare', {}, h('caption', {}, 'Where it fires most (the strongest token in bold)'),
      h('tbody', {}, ...contexts.slice(0, 8).map((c) => h('tr', {}, h('td', {}, fmt(c.activation)),
        h('td.text', {}, ...c.tokens.map((t, i) => (i === c.centre ? h('strong', {}, showToken(t)) : showToken(t)))))))));
  }
  const effects = [...(dash.promotes || []).slice(0, 6), ...(dash.suppresses || []).slice(0, 6)];
  if (effects.length) {
    chart(box, {
      kind: 'bars',
      title: `Tokens feature ${feature} pushes up (orange) and down (blue) directly`,
      labels: effects.map((t) => showToken(t.token)),
      values: effects.map((t) => t.value),
      valueLabel: 'logit change per unit of activation',
    }, { json: dash });
  }
}
