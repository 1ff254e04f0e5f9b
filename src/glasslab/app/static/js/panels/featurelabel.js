// A feature's label on its dashboard, and "Edit label": your own label, kept in glasslab's store by
// POST /api/sae-label (never in the SAE's files) and shown over the SAE's automatic one everywhere. The page
// relabels what it already holds for that SAE at once, so no feature list or dashboard is computed again.

import { h } from '../dom.js';
import { cachedEntries, remember, request } from '../api.js';
import { button, errorLine, refresh } from './common.js';

const MAX = 200; // characters: the server refuses longer labels
const SOURCES = { auto: 'automatic', neuronpedia: 'from Neuronpedia', user: 'yours' };
const editing = { feature: null, error: null };

/** `label` (the API's label object, or null) on `feature` in every result the page holds for `sae`. */
function relabel(sae, feature, label) {
  const fix = (s) => (s.feature === feature ? { ...s, label: label?.label ?? null } : s);
  for (const { name, body, result } of cachedEntries()) {
    if (body.sae !== sae) continue;
    if (name === 'sae-dashboard' && body.feature === feature) remember(name, body, { ...result, label });
    if (name === 'sae-features') {
      remember(name, body, { ...result, tokens: result.tokens.map((t) => ({ ...t, top: t.top.map(fix), dense: (t.dense || []).map(fix) })) });
    }
  }
}

async function save(sae, feature, change) {
  try {
    const answer = await request('POST', '/api/sae-label', { sae, feature, ...change });
    relabel(sae, feature, answer.label);
    Object.assign(editing, { feature: null, error: null });
  } catch (err) {
    editing.error = String(err.message || err);
  }
  refresh();
}

function edit(feature) {
  Object.assign(editing, { feature, error: null });
  refresh();
}

/** The label line of the dashboard `dash` of `feature` (SAE `sae`), or its edit form, appended to `box`. */
export function featureLabel(box, sae, feature, dash) {
  const label = dash.label;
  const line = h('div.feature-label');
  box.append(line);
  const source = label ? ` (${SOURCES[label.source] ?? label.source})` : '';
  if (editing.feature !== feature) {
    line.append(h('p.label-line', {}, label ? ['Label: ', h('strong.label-text', {}, label.label), source] : h('span.muted', {}, 'No label yet.'), ' ',
      button(label ? 'Edit label' : 'Write a label', 'Write your own label of this feature: kept in your glasslab store, shown instead of the SAE\u2019s', () => edit(feature))));
    return;
  }
  const input = h('input#feature-label-input', { type: 'text', maxlength: MAX, size: 40, value: label?.label ?? '', 'aria-label': `Label of feature ${feature}` });
  line.append(h('form.controls.no-report.label-form', { onsubmit: (ev) => { ev.preventDefault(); save(sae, feature, { label: input.value }); } },
    input, h('button.primary', { type: 'submit', title: 'Keep this label in your glasslab store' }, 'Save label'),
    button('Cancel', 'Leave the label as it is', () => edit(null)),
    label?.source === 'user' ? button('Use the SAE\u2019s label', 'Remove your label: the SAE\u2019s own shows again', () => save(sae, feature, { clear: true })) : null));
  if (label?.replaces) line.append(h('p.small.muted', {}, `The SAE\u2019s own label: ${label.replaces}`));
  if (editing.error) line.append(errorLine(editing.error));
  requestAnimationFrame(() => input.focus());
}
