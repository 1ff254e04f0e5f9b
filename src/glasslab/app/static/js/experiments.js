// Named experiments saved on the server (SQLite): the prompt, model, selections, interventions and every
// result fetched for this prompt. Reopening one puts the results back in the cache, so the panels redraw
// without running the model again.

import { cachedEntries, remember, request } from './api.js';
import { h } from './dom.js';
import { learnPatterns } from './panels/attention.js';
import { state, update } from './store.js';
import { drawStrip } from './tokens.js';

const $ = (id) => document.getElementById(id);

function relevant(entry) {
  const b = entry.body || {};
  return b.prompt === state.prompt || b.clean === state.prompt || entry.name === 'head-roles';
}

export function snapshot(name) {
  const results = cachedEntries().filter(relevant);
  return {
    name,
    prompt: state.prompt,
    model: state.model?.name,
    settings: {
      panel: state.panel, position: state.position, layer: state.layer, head: state.head, agg: state.agg,
      forms: state.settings, tokens: state.tokens,
    },
    interventions: [
      ...(state.ablate.length ? [{ kind: 'ablate', heads: state.ablate }] : []),
      ...(state.settings.patching?.corrupted ? [{ kind: 'patch', corrupted: state.settings.patching.corrupted }] : []),
      ...(state.settings.steering?.pairs ? [{ kind: 'steer', pairs: state.settings.steering.pairs, layer: state.settings.steering.layer }] : []),
    ],
    results: { entries: results },
  };
}

export async function saveExperiment(name) {
  if (!state.tokens.length) throw new Error('Analyse a prompt first: an experiment saves the current analysis.');
  return request('POST', '/api/experiments', snapshot(name));
}

export async function reopen(id) {
  const exp = await request('GET', `/api/experiments/${id}`);
  for (const e of exp.results?.entries || []) {
    remember(e.name, e.body, e.result);
    if (e.name === 'attention' || e.name === 'overview') learnPatterns(e.name === 'overview' ? e.result.attention : e.result);
  }
  const s = exp.settings || {};
  document.getElementById('prompt').value = exp.prompt;
  update({
    prompt: exp.prompt,
    tokens: s.tokens || [],
    position: s.position ?? null,
    layer: s.layer ?? null,
    head: s.head ?? null,
    agg: s.agg || 'max',
    settings: s.forms || {},
    ablate: exp.interventions?.find((i) => i.kind === 'ablate')?.heads || [],
    panel: s.panel || 'predictions',
  });
  drawStrip();
  if (exp.model && state.model && exp.model !== state.model.name) {
    return `Saved with ${exp.model}; the loaded model is ${state.model.name}: new requests use the loaded model.`;
  }
  return `Opened "${exp.name}".`;
}

async function refreshList() {
  const list = $('exp-list');
  const { experiments } = await request('GET', '/api/experiments');
  list.replaceChildren(...(experiments.length ? experiments.map((e) => h('li', {},
    h('span', {}, h('strong', {}, e.name), h('span.muted', {}, ` \u00b7 ${e.model} \u00b7 ${new Date(e.updated * 1000).toLocaleString()} \u00b7 "${e.prompt.slice(0, 50)}"`)),
    h('span', {},
      h('button', { type: 'button', title: `Reopen "${e.name}"`, dataset: { open: e.id } }, 'Open'),
      h('button', { type: 'button', title: `Delete "${e.name}" from the server`, dataset: { del: e.id } }, 'Delete'))))
    : [h('li.muted', {}, 'No saved experiments yet.')]));
}

let wired = false;
export async function openExperiments(saving) {
  const dlg = $('experiments');
  const msg = $('exp-msg');
  msg.textContent = '';
  $('exp-save').hidden = !saving;
  $('exp-name').title = 'A name for this experiment (unique)';
  $('exp-save-btn').title = 'Save the current analysis under this name';
  if (!wired) {
    wired = true;
    $('exp-save-btn').addEventListener('click', async () => {
      const name = $('exp-name').value.trim();
      if (!name) { msg.textContent = 'Give the experiment a name.'; return; }
      try {
        await saveExperiment(name);
        msg.textContent = `Saved "${name}".`;
        await refreshList();
      } catch (err) {
        msg.textContent = `Not saved: ${err.message}`;
      }
    });
    $('exp-list').addEventListener('click', async (ev) => {
      const open = ev.target.closest('[data-open]');
      const del = ev.target.closest('[data-del]');
      try {
        if (open) {
          const text = await reopen(open.dataset.open);
          dlg.close();
          document.getElementById('message').hidden = true;
          document.getElementById('strip-note').textContent = text;
        } else if (del) {
          await request('DELETE', `/api/experiments/${del.dataset.del}`);
          await refreshList();
        }
      } catch (err) {
        msg.textContent = err.message;
      }
    });
  }
  if (!dlg.open) dlg.showModal();
  if (saving) {
    $('exp-name').value = $('exp-name').value || state.prompt.slice(0, 40);
    $('exp-name').focus();
  }
  try {
    await refreshList();
  } catch (err) {
    msg.textContent = err.message;
  }
}
