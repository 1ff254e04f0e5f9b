// SAE features per token. The server offers SAE endpoints only once an SAE is available to it; until then
// the panel says so plainly instead of showing an empty chart. The answer is glasslab.sae's `sae_features`
// result for the whole prompt, so selecting another token needs no request.

import { fmt, h, showToken } from '../dom.js';
import { call, cached } from '../api.js';
import { chart } from '../chart.js';
import { position, state } from '../store.js';
import { frame, need } from './common.js';

export const sae = { available: false };

function body() {
  return { prompt: state.prompt };
}

export function render(root) {
  const el = frame(root, 'sae');
  if (!sae.available) {
    el.append(h('p.empty-state', { role: 'note' }, `No SAE available for this model yet (${state.model?.name ?? 'the loaded model'}). `
      + 'When a sparse autoencoder is installed for it, the most active features at the selected token appear here, '
      + 'each with a dashboard and a link to Neuronpedia.'));
    return;
  }
  const p = position();
  const d = need(el, 'the SAE features of the prompt', () => cached('sae-features', body()), () => call('sae-features', body()));
  if (!d) return;
  const tok = (d.tokens || []).find((t) => t.position === p);
  if (!tok) {
    el.append(h('p.muted', {}, `The SAE at ${d.hook} reports nothing at position ${p} (it may skip the BOS token).`));
    return;
  }
  el.append(h('p.facts', {}, `SAE ${d.sae} at ${d.hook}: ${tok.l0} features fire at position ${p} `, h('code', {}, showToken(tok.token)),
    `; it misses ${fmt(100 * tok.relative_error, 1)}% of the activation (cosine ${fmt(tok.cosine)}).`));
  chart(el, {
    kind: 'bars',
    title: `Most active features at position ${p}`,
    labels: tok.top.map((f) => `F${f.feature}${f.label ? ` ${f.label}` : ''}`),
    values: tok.top.map((f) => f.activation),
    valueLabel: 'feature activation',
  }, { json: d });
  const links = d.neuronpedia ? h('ul.features', {}, ...tok.top.map((f) => h('li', {}, `F${f.feature}: `,
    h('a', { href: d.neuronpedia.replace('{feature}', f.feature), target: '_blank', rel: 'noopener noreferrer', title: 'Open this feature on Neuronpedia (a public website; needs internet)' }, 'Neuronpedia')))) : null;
  if (links) el.append(links);
}
