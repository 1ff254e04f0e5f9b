// SAE features per token. The server offers SAE endpoints only for models with a sparse autoencoder;
// until then the panel says so plainly instead of showing an empty chart.

import { fmt, h, showToken } from '../dom.js';
import { call, cached } from '../api.js';
import { chart } from '../chart.js';
import { position, state } from '../store.js';
import { frame, need } from './common.js';

export const sae = { available: false, reason: 'no SAE available for this model yet' };

function body(p) {
  return { prompt: state.prompt, position: p, top: 10 };
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
  const d = need(el, `the SAE features at position ${p}`, () => cached('sae-features', body(p)), () => call('sae-features', body(p)));
  if (!d) return;
  const feats = d.features || [];
  chart(el, {
    kind: 'bars',
    title: `Most active features at position ${p} (${showToken(state.tokens[p]?.token ?? '')})`,
    labels: feats.map((f) => `#${f.feature}${f.label ? ` ${f.label}` : ''}`),
    values: feats.map((f) => f.activation),
    valueLabel: 'feature activation',
  }, { json: d });
  el.append(h('ul.features', {}, ...feats.map((f) => h('li', {}, `#${f.feature}: ${fmt(f.activation)} `,
    f.neuronpedia ? h('a', { href: f.neuronpedia, target: '_blank', rel: 'noopener noreferrer', title: 'Open this feature on Neuronpedia (a public website; needs internet)' }, 'Neuronpedia') : null))));
}
