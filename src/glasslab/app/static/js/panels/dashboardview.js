// A feature's dashboard as the SAE panel and the attribution graph's node details show it: where it fires most,
// how strongly (histogram), and the tokens it pushes up and down directly. The same view for an SAE feature
// (sae-dashboard) and a transcoder feature (transcoders-dashboard): both answer one dashboard result.

import { fmt, h, pct, showToken } from '../dom.js';
import { chart } from '../chart.js';

/** The line saying how often the feature fires and on which text. */
export function dashboardFacts(dash) {
  return h('p.facts.dashboard-facts', {}, `Fires on ${pct(dash.density ?? 0)} of the ${dash.tokens.toLocaleString()} tokens `
    + `of ${dash.corpus} it was read on (${dash.sequences.toLocaleString()} sequence${dash.sequences === 1 ? '' : 's'}); strongest activation ${fmt(dash.max_activation)}.`);
}

/** Top contexts, the histogram of its activations and the tokens it pushes, appended to `box`. */
export function dashboardView(box, dash, feature, { contexts: shown = 8 } = {}) {
  const contexts = dash.contexts || [];
  if (contexts.length) {
    box.append(h('table.compare.dashboard-contexts', {}, h('caption', {}, 'Where it fires most (the strongest token in bold)'),
      h('tbody', {}, ...contexts.slice(0, shown).map((c) => h('tr', {}, h('td', {}, fmt(c.activation)),
        h('td.text', {}, ...c.tokens.map((t, i) => (i === c.centre ? h('strong', {}, showToken(t)) : showToken(t)))))))));
  }
  const hist = dash.histogram || { edges: [], counts: [] };
  if (hist.counts.length) {
    chart(box, {
      kind: 'bars',
      title: `How strongly feature ${feature} fires where it fires (tokens per activation range)`,
      labels: hist.counts.map((_, i) => `${fmt(hist.edges[i])}–${fmt(hist.edges[i + 1])}`),
      values: hist.counts,
      format: (v) => v.toLocaleString(), // counts of tokens: whole numbers
      valueLabel: 'tokens',
    }, { json: dash });
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
