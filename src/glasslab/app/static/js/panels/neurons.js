// Neurons: the most active MLP neurons at the selected token and those that push its top prediction most.

import { fmt, h, showToken } from '../dom.js';
import { chart } from '../chart.js';
import { Q, fetchPrediction, fetchQ, get, prediction } from '../data.js';
import { position } from '../store.js';
import { frame, need } from './common.js';

export function render(root) {
  const el = frame(root, 'neurons');
  const p = position();
  const pred = need(el, 'the prediction', () => prediction(p), () => fetchPrediction(p));
  if (!pred) return;
  const target = pred.top[0].token || undefined; // a token that decodes to nothing cannot be named
  const d = need(el, `the neurons at position ${p}`, () => get(Q.neurons(p, target)), () => fetchQ(Q.neurons(p, target)));
  if (!d) return;
  el.append(h('p.facts', {}, `Position ${p} `, h('code', {}, showToken(d.context_token)), d.metric ? ['; direct shares of ', h('code', {}, d.metric)] : '', '.'));
  const name = (n) => `L${n.layer}.N${n.neuron}`;
  chart(el, {
    kind: 'bars',
    title: 'Most active neurons (by size of activation)',
    labels: d.most_active.map(name),
    values: d.most_active.map((n) => n.activation),
    hover: d.most_active.map((n) => `${name(n)}: activation ${fmt(n.activation, 4)}, direct share ${fmt(n.contribution, 4)}`),
    valueLabel: 'activation',
  }, { json: d });
  if (d.most_relevant?.length) {
    chart(el, {
      kind: 'bars',
      title: `Neurons pushing ${showToken(target ?? '')} most directly`,
      labels: d.most_relevant.map(name),
      values: d.most_relevant.map((n) => n.contribution),
      hover: d.most_relevant.map((n) => `${name(n)}: direct share ${fmt(n.contribution, 4)} logit units (activation ${fmt(n.activation, 4)})`),
      valueLabel: 'direct share of the logit (logit units)',
    });
  }
}
