// "Clamp this feature" on an SAE feature's dashboard: the feature held at 0 (off), 1x, 2x and 4x its strongest
// activation in the dashboard's corpus scan while the model continues the prompt, beside the unclamped text.
// Strengths come from the feature's own scale: fixed values (5, 10) are far below the activations of real
// SAEs (hundreds to thousands) and move nothing. It is one sae-clamp sweep (mode 'value'), the Steering
// tab's operation, so its result is the API's for the same body. The SAE panel's "Clamp: F<n>" buttons open
// the dashboard with `start`: the section scrolls into view and the clamp runs without a second click.

import { fmt, h, pct, showToken } from '../dom.js';
import { cached, job } from '../api.js';
import { CONTROLS } from '../explain.js';
import { state } from '../store.js';
import { action, progressText } from './common.js';

export const MULTIPLES = [0, 1, 2, 4];
export const CLAMP_TOKENS = 12;
const LIMIT = 1e4; // the largest clamp value the server takes (FeatureClampBody)

/** The clamp values for a feature whose strongest activation is `max`: the multiples the server accepts. */
export function strengths(max) {
  return MULTIPLES.map((m) => ({ multiple: m, amount: m * max })).filter((s) => Math.abs(s.amount) <= LIMIT);
}

function clampBody(sae, feature, amounts) {
  return { prompt: state.prompt, sae, features: [feature], mode: 'value', amounts, max_new_tokens: CLAMP_TOKENS };
}

const label = (s) => (s.multiple === 0 ? 'off (0)' : `${s.multiple}\u00d7 = ${fmt(s.amount)}`);

/** The clamp section of the dashboard `dash` of `feature` (SAE `sae`), appended to `box`; `start` runs it. */
export function featureClamp(box, sae, feature, dash, { start = false } = {}) {
  const section = h('section.feature-clamp');
  box.append(section);
  if (start) requestAnimationFrame(() => section.scrollIntoView({ block: 'nearest' }));
  const max = dash.max_activation;
  if (!(max > 0)) {
    section.append(h('p.muted', {}, `Feature ${feature} never fired in the ${dash.tokens.toLocaleString()} corpus tokens scanned, `
      + 'so it has no strength of its own to clamp it to; set a value by hand in the Steering tab.'));
    return;
  }
  const chosen = strengths(max);
  const left = MULTIPLES.filter((m) => !chosen.some((s) => s.multiple === m));
  section.append(h('p.clamp-scale', {}, `1\u00d7 = ${fmt(max)}, feature ${feature}'s strongest activation in the `
    + `${dash.tokens.toLocaleString()} corpus tokens its dashboard scanned; the clamp holds it at ${chosen.map(label).join(', ')} `
    + `at every token while the model writes ${CLAMP_TOKENS} tokens after your prompt.`,
  left.length ? ` ${left.map((m) => `${m}\u00d7`).join(', ')} would pass the server's limit of ${LIMIT.toLocaleString()} and ${left.length > 1 ? 'are' : 'is'} left out.` : ''));
  const out = h('div.results');
  const body = clampBody(sae, feature, chosen.map((s) => s.amount));
  const run = action('Clamp this feature', CONTROLS.clampFeature, async (say) => {
    await job('sae-clamp', body, (j) => say(`Clamping feature ${feature}: ${progressText(j)}`));
  }, out);
  section.append(h('div.controls.no-report', {}, run), out);
  const d = cached('sae-clamp', body);
  if (start && !d) run.click();
  if (!d) return;
  const top = showToken(d.baseline_top);
  out.append(h('div.table-scroll', {}, h('table.compare.feature-clamp-table', {}, h('caption', {}, `Feature ${feature} of ${d.sae} clamped to multiples of its strongest activation`),
    h('thead', {}, h('tr', {}, h('th', {}, 'strength'), h('th', {}, 'continuation'), h('th', {}, 'next token'),
      h('th', {}, `P(\u201c${top}\u201d)`), h('th', {}, 'KL to baseline'))),
    h('tbody', {},
      h('tr.baseline', {}, h('th', {}, 'baseline (no clamp)'), h('td.text', {}, h('span.prompt-echo', {}, d.prompt), d.baseline),
        h('td', {}, top), h('td', {}, pct(d.baseline_top_prob)), h('td', {}, '0')),
      ...d.rows.map((r, i) => h('tr', {}, h('th', {}, label(chosen[i])), h('td.text', {}, h('span.prompt-echo', {}, d.prompt), r.completion),
        h('td', {}, showToken(r.next_top)), h('td', {}, pct(r.baseline_top_prob)), h('td', {}, fmt(r.kl))))))));
}
