// Predictions: the top next tokens after the selected position.

import { fmt, pct, showToken } from '../dom.js';
import { chart } from '../chart.js';
import { fetchPrediction, prediction } from '../data.js';
import { position, state } from '../store.js';
import { frame, need } from './common.js';
import { h } from '../dom.js';

export function render(root) {
  const el = frame(root, 'predictions');
  const p = position();
  const pred = need(el, 'the predictions', () => prediction(p), () => fetchPrediction(p));
  if (!pred) return;
  el.append(h('p.facts', {}, `After token ${p} `, h('code', {}, showToken(state.tokens[p]?.token ?? '')),
    `: entropy ${fmt(pred.entropy_nats)} nats; top guess `, h('strong.top-guess', {}, showToken(pred.top[0].token)),
    ` at ${pct(pred.top[0].probability)}.`));
  chart(el, {
    kind: 'bars',
    title: `Most likely next tokens after position ${p}`,
    labels: pred.top.map((t) => `${t.rank}. ${showToken(t.token)}`),
    values: pred.top.map((t) => t.probability),
    format: pct,
    hover: pred.top.map((t) => `${showToken(t.token)} (id ${t.token_id}): probability ${pct(t.probability)}, logit ${fmt(t.logit)}`),
    valueLabel: 'probability (softmax of the logits)',
  }, { json: pred });
}
