// Feature search in the SAE panel: words or a meaning ('medical', 'past tense') looked up over the labels of the
// chosen SAE with POST /api/sae-search (the words a feature fires on, its contexts, and the cosine between the
// query and those words in the model's own token embeddings). Clicking a result opens that feature's dashboard.

import { fmt, h } from '../dom.js';
import { cached, call } from '../api.js';
import { render as chartRender } from '../chart.js';
import { setting, setSetting } from '../store.js';
import { errorLine, field, refresh } from './common.js';

const TOP = 20;
const MAX_CHARS = 200; // the server's limit (SaeSearchBody)
const failed = { key: null, message: '' }; // the last search's error, kept across re-renders

const searchBody = (sae, query) => ({ sae, query, top: TOP });

/** The search box for SAE `sae` and the results of the last query searched, appended to `el`. */
export function featureSearch(el, sae) {
  const query = setting('sae', 'search', '');
  const box = h('section.feature-search');
  el.append(box);
  if (!chartRender.report) {
    const input = h('input#sae-search-query', {
      type: 'search', value: setting('sae', 'searchDraft', query), maxlength: MAX_CHARS, placeholder: 'e.g. medical, past tense, numbers',
    });
    // What is typed survives the panel redrawing itself meanwhile (a dashboard or the features arriving).
    input.addEventListener('input', () => setSetting('sae', 'searchDraft', input.value));
    const form = h('form.controls.no-report', {}, field('Find features', input,
      'Words or a meaning to look for in the features\u2019 labels: what they fire on and their top contexts, matched by word and by nearness in the model\u2019s own token embeddings'),
    h('button.primary', { type: 'submit' }, 'Search'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      setSetting('sae', 'search', text);
      search(sae, text);
    });
    box.append(form);
  }
  if (!query) return;
  const key = JSON.stringify(searchBody(sae, query));
  if (failed.key === key) {
    box.append(errorLine(failed.message));
    return;
  }
  const d = cached('sae-search', searchBody(sae, query));
  if (!d) {
    box.append(h('p.loading', { role: 'status' }, `Searching the labels for \u201c${query}\u201d\u2026`));
    search(sae, query);
    return;
  }
  results(box, d);
}

function search(sae, query) {
  const body = searchBody(sae, query);
  call('sae-search', body).then(() => { failed.key = null; }, (err) => {
    failed.key = JSON.stringify(body);
    failed.message = String(err.message || err);
  }).finally(refresh);
}

function results(box, d) {
  const chosen = Number(setting('sae', 'feature', -1));
  if (!d.hits.length) {
    box.append(h('p.muted.search-none', {}, `No labelled feature of ${d.sae_name ?? d.sae} matches \u201c${d.query}\u201d (${d.searched} searched).`));
    return;
  }
  box.append(h('div.table-scroll', {}, h('table.compare.search-results', {},
    h('caption', {}, `Features of ${d.sae_name ?? d.sae} matching \u201c${d.query}\u201d (of ${d.searched} labelled; score = words + meaning). Click one for its dashboard.`),
    h('thead', {}, h('tr', {}, h('th', {}, 'feature'), h('th', {}, 'score'), h('th', {}, 'why'), h('th', {}, 'label'))),
    h('tbody', {}, ...d.hits.map((hit) => h(`tr${hit.feature === chosen ? '.selected' : ''}`, {},
      h('td', {}, h('button.small', {
        type: 'button', title: `Open feature ${hit.feature}'s dashboard`,
        onclick: () => { setSetting('sae', 'feature', hit.feature); refresh(); },
      }, `F${hit.feature}`)),
      h('td', { title: `words ${fmt(hit.lexical, 2)}, meaning ${fmt(hit.meaning, 2)}` }, fmt(hit.score, 2)),
      h('td.small', {}, hit.matched.join('; ')),
      h('td.text', {}, hit.label)))))));
}
