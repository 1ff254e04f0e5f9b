// Activation patching (clean vs corrupted): layer x position and layer x head heatmaps.

import { fmt, h, headName, short, showToken } from '../dom.js';
import { cached, job } from '../api.js';
import { chart } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { setting, setSetting, state, update } from '../store.js';
import { action, field, frame, progressText } from './common.js';

export const DEMO_CORRUPTIONS = {
  'The Eiffel Tower is in the city of': 'The Colosseum is in the city of',
  'Alice and Bob went to the park. Alice and Bob went to the': 'Alice and Bob went to the zoo. Alice and Bob went to the',
};

/** The clean/corrupted pair and metric tokens shared by patching and the circuit graph. */
export function pairBody() {
  // A logit difference: the clean answer's logit minus the corrupted answer's (each prompt's top prediction
  // unless target/versus are typed), so 1 = behaves like the clean prompt and 0 = like the corrupted one.
  const body = { clean: state.prompt, corrupted: setting('patching', 'corrupted', DEMO_CORRUPTIONS[state.prompt] ?? ''), metric: 'logit_diff' };
  const target = setting('patching', 'target', '');
  const versus = setting('patching', 'versus', '');
  if (target) body.target = target;
  if (versus) body.versus = versus;
  return body;
}

export const SITES = { positions: { site: 'resid_pre' }, heads: { site: 'attn.head_out' } };

export function patchBody(kind) {
  return { ...pairBody(), ...SITES[kind] };
}

export function pairControls(el, out, panel, runs) {
  const input = (name, label, tip, placeholder, wide) => {
    const c = h('input', { type: 'text', id: `${panel}-${name}`, value: setting('patching', name, name === 'corrupted' ? DEMO_CORRUPTIONS[state.prompt] ?? '' : ''), placeholder, class: wide ? 'wide' : '' });
    c.addEventListener('change', () => setSetting('patching', name, c.value));
    c.addEventListener('input', () => setSetting('patching', name, c.value));
    return field(label, c, tip);
  };
  el.append(h('div.controls.no-report', {},
    h('div.field-static', {}, h('span', {}, 'Clean prompt'), h('code', {}, state.prompt)),
    input('corrupted', 'Corrupted prompt', CONTROLS.corrupted, 'the same prompt with one detail changed', true),
    input('target', 'Target token', CONTROLS.target, 'e.g. " Paris" (optional)'),
    input('versus', 'Versus token', CONTROLS.versus, 'e.g. " Rome" (optional)'),
    ...runs.map(([text, tip, run]) => action(text, tip, run, out))));
}

function check(body) {
  if (!body.corrupted) throw new Error('Type a corrupted prompt first: the same text with one detail changed.');
}

export function render(root) {
  const el = frame(root, 'patching');
  const out = h('div.results');
  const run = (kind) => async (say) => {
    const body = patchBody(kind);
    check(body);
    await job('patch', body, (j) => say(`Patching ${kind === 'heads' ? 'every head' : 'every layer and position'}: ${progressText(j)}`));
  };
  pairControls(el, out, 'patching', [
    ['Patch layers \u00d7 positions', 'Copy the residual stream of one layer and position at a time from the clean run', run('positions')],
    ['Patch layers \u00d7 heads', 'Copy one head\'s output at a time (all positions) from the clean run', run('heads')],
  ]);
  el.append(out);
  const byPos = cached('patch', patchBody('positions'));
  const byHead = cached('patch', patchBody('heads'));
  if (!byPos && !byHead) {
    out.append(h('p.muted', {}, 'Nothing patched yet for this pair: choose a corrupted prompt and run one of the sweeps.'));
    return;
  }
  const any = byPos || byHead;
  out.append(h('p.facts.patch-facts', {}, `${any.metric}: clean ${fmt(any.clean_value)}, corrupted ${fmt(any.corrupted_value)} (${any.mode}).`));
  if (byPos) {
    const cols = byPos.columns.map((c) => `${c} ${showToken(byPos.clean_tokens[c] ?? '')}`);
    chart(out, {
      kind: 'heatmap',
      title: 'Patching the residual stream: layer (row) \u00d7 position (column)',
      rows: byPos.layers.map((l) => `L${l}`),
      cols,
      values: byPos.normalised,
      diverging: true,
      text: (i, j) => short(byPos.normalised[i][j]),
      hover: (i, j) => `layer ${byPos.layers[i]}, ${cols[j]} (corrupted: ${showToken(byPos.corrupted_tokens[byPos.columns[j]] ?? '')}): `
        + `${fmt(byPos.normalised[i][j], 3)} of the clean score restored (raw ${fmt(byPos.raw[i][j], 3)})`,
      rowTitle: 'layer',
      colTitle: 'position (clean token)',
      valueLabel: '0 = corrupted score, 1 = clean score',
      onClick: (i, j) => update({ position: byPos.columns[j] }),
    }, { json: byPos });
  }
  if (byHead) {
    chart(out, {
      kind: 'heatmap',
      title: 'Patching each head\'s output: layer (row) \u00d7 head (column)',
      rows: byHead.layers.map((l) => `L${l}`),
      cols: byHead.columns.map((c) => `H${c}`),
      values: byHead.normalised,
      diverging: true,
      text: (i, j) => short(byHead.normalised[i][j]),
      hover: (i, j) => `${headName(byHead.layers[i], byHead.columns[j])}: ${fmt(byHead.normalised[i][j], 3)} of the clean score restored (raw ${fmt(byHead.raw[i][j], 3)})`,
      rowTitle: 'layer',
      colTitle: 'head',
      valueLabel: '0 = corrupted score, 1 = clean score',
      cellW: 44,
      cellH: 18,
      onClick: (i, j) => update({ layer: byHead.layers[i], head: byHead.columns[j] }),
    }, { json: byHead });
  }
}
