// The feature demo of the SAE panel (and the tutorial's third demo): a feature found by meaning, not picked by
// hand (the top non-dense result of the feature search for a concept over the widest labelled SAE here), held
// at 0, 1x, 2x and 4x its strongest activation while the model continues the prompt, beside the unclamped
// text. The feature's own words (those it fires on in its top contexts) and the concept are counted in each
// continuation, so the effect is a number the reader can check, not an impression.

import { fmt, h } from '../dom.js';
import { cached, call, job } from '../api.js';
import { state } from '../store.js';
import { action, progressText } from './common.js';
import { CLAMP_TOKENS, MULTIPLES, strengths } from './featureclamp.js';

export const DEMO_CONCEPT = 'medical';
const demo = { concept: DEMO_CONCEPT }; // the concept last asked for (kept across re-renders)

/** The SAE the demo uses: the widest labelled SAE on this machine (its features are the most specific). */
export function demoSae(list) {
  return list.filter((s) => s.on_disk && s.labels).sort((a, b) => (b.d_sae ?? 0) - (a.d_sae ?? 0))[0]?.name ?? null;
}

const searchBody = (sae, concept) => ({ sae, query: concept, top: 1, exclude_dense: true });
const dashBody = (sae, feature) => ({ feature, sae, k: 10 });
const clampBody = (sae, feature, amounts) => ({
  prompt: state.prompt, sae, features: [feature], mode: 'value', amounts, max_new_tokens: CLAMP_TOKENS,
});

/** Lower-case words of a text. */
const wordsOf = (text) => (text.toLowerCase().match(/[a-z][a-z'-]*/g) || []);

/** The words that stand for the feature's concept: the concept asked for, the class its label names, and the
 * words it fires on in its top contexts. */
export function conceptWords(concept, label) {
  const words = new Set(wordsOf(concept));
  for (const w of wordsOf(label?.concept || '')) words.add(w);
  for (const [w] of label?.words || []) for (const x of wordsOf(w)) words.add(x);
  return words;
}

/** How many words of `text` are among `words` (and which). */
export function countConcept(text, words) {
  const found = wordsOf(text).filter((w) => words.has(w));
  return { count: found.length, found };
}

/** The demo's three answers for `sae` and the concept, once all are cached (null before). */
function answers(sae, concept) {
  const search = cached('sae-search', searchBody(sae, concept));
  const hit = search?.hits?.[0];
  const dash = hit && cached('sae-dashboard', dashBody(sae, hit.feature));
  if (!dash) return search && !hit ? { search } : null;
  const amounts = strengths(dash.max_activation).map((x) => x.amount);
  const clamp = cached('sae-clamp', clampBody(sae, hit.feature, amounts));
  return clamp ? { search, hit, dash, clamp, amounts } : null;
}

async function run(sae, concept, say) {
  say(`Searching the labels of ${sae} for \u201c${concept}\u201d\u2026`);
  const search = await call('sae-search', searchBody(sae, concept));
  const hit = search.hits[0];
  if (!hit) return;
  const dash = await job('sae-dashboard', dashBody(sae, hit.feature), (j) => say(`Feature ${hit.feature}'s dashboard: ${progressText(j)}`));
  const amounts = strengths(dash.max_activation).map((x) => x.amount);
  await job('sae-clamp', clampBody(sae, hit.feature, amounts), (j) => say(`Clamping feature ${hit.feature}: ${progressText(j)}`));
}

/** The demo section for the SAEs listed in `list`, appended to `el`. */
export function featureDemo(el, list) {
  const sae = demoSae(list);
  if (!sae) return;
  const box = h('section.feature-demo');
  el.append(box);
  box.append(h('h3', {}, 'Demo: switch a feature on'));
  const input = h('input#demo-concept', { type: 'text', value: demo.concept, maxlength: 60 });
  // What is typed survives the panel redrawing itself meanwhile (a dashboard or the features arriving).
  input.addEventListener('input', () => { demo.concept = input.value.trim() || DEMO_CONCEPT; });
  const out = h('div.results.feature-demo-results');
  box.append(h('p.small', {}, `Finds the feature of ${sae} whose label best matches a concept (the feature search, dense features left out), `
    + `then holds it at 0, 1\u00d7, 2\u00d7 and 4\u00d7 its strongest activation while the model writes ${CLAMP_TOKENS} tokens after your prompt. `
    + 'The concept\u2019s words and the feature\u2019s own are counted in each continuation.'));
  box.append(h('div.controls.no-report', {}, h('label', {}, 'Concept ', input),
    action('Find the feature and clamp it', 'Search the labels for the concept, then clamp the best match at multiples of its strongest activation', async (say) => {
      demo.concept = input.value.trim() || DEMO_CONCEPT;
      await run(sae, demo.concept, say);
    }, out)), out);
  const r = answers(sae, demo.concept);
  if (r) show(out, demo.concept, r);
}

function show(out, concept, { search, hit, dash, clamp, amounts }) {
  if (!hit) {
    out.append(h('p.muted.demo-none', {}, `No labelled feature of ${search.sae_name ?? search.sae} matches \u201c${concept}\u201d: try another concept.`));
    return;
  }
  const words = conceptWords(concept, dash.label);
  const base = countConcept(clamp.baseline, words);
  const rows = clamp.rows.map((r, i) => ({ multiple: MULTIPLES[i], amount: amounts[i], ...r, ...countConcept(r.completion, words) }));
  const best = rows.reduce((a, b) => (b.count > a.count ? b : a), rows[0]);
  out.append(h('p.demo-feature', {}, `Feature ${hit.feature}, the best match for \u201c${concept}\u201d: `, h('em', {}, hit.label),
    `. Its words: ${[...words].slice(0, 12).join(', ')}.`));
  out.append(h('div.table-scroll', {}, h('table.compare.feature-demo-table', {},
    h('caption', {}, `The prompt continued with feature ${hit.feature} clamped (1\u00d7 = ${fmt(dash.max_activation)}, its strongest activation in ${dash.tokens.toLocaleString()} tokens of ${dash.corpus})`),
    h('thead', {}, h('tr', {}, h('th', {}, 'strength'), h('th', {}, 'continuation'), h('th', {}, 'concept words'))),
    h('tbody', {},
      h('tr.baseline', {}, h('th', {}, 'no clamp'), h('td.text', {}, h('span.prompt-echo', {}, clamp.prompt), clamp.baseline),
        h('td.demo-count', {}, `${base.count}${base.found.length ? ` (${base.found.join(', ')})` : ''}`)),
      ...rows.map((r) => h('tr', {}, h('th', {}, r.multiple === 0 ? 'off (0)' : `${r.multiple}\u00d7`),
        h('td.text', {}, h('span.prompt-echo', {}, clamp.prompt), r.completion),
        h('td.demo-count', {}, `${r.count}${r.found.length ? ` (${r.found.join(', ')})` : ''}`)))))));
  out.append(h('p.demo-result', {}, best.count > base.count
    ? `Clamped at ${best.multiple}\u00d7, the continuation uses ${best.count} of the concept\u2019s words, against ${base.count} without the clamp: switching the feature on moves the text toward \u201c${concept}\u201d.`
    : `No clamp strength brings more of the concept\u2019s words than the unclamped text (${base.count}): this feature does not steer this prompt toward \u201c${concept}\u201d.`));
  out.append(h('p.small.muted', {}, 'A clamp shows what the feature can push the text toward when forced, not what it does normally; 4\u00d7 is beyond anything seen in the corpus and may break the text for reasons unrelated to the feature.'));
}
