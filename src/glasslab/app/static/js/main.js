// The workbench: wires the prompt, token strip, tabs, model switcher, exports, experiments and tutorial to
// the state, and re-renders only the visible panel from cached results when a selection changes.

import { call, forget, job, pollJob, request } from './api.js';
import { h, plural } from './dom.js';
import { plain } from './errors.js';
import { CONTROLS, loadExplanations, PANELS as TEXTS } from './explain.js';
import { Q } from './data.js';
import { PANEL_ORDER, PANELS } from './panels/index.js';
import { onDataArrived } from './panels/common.js';
import { learnPatterns } from './panels/attention.js';
import { listed, sae } from './panels/sae.js';
import { prefetch, prefetchTimes, stopPrefetch } from './prefetch.js';
import { saveSettings, settings } from './settings.js';
import { state, subscribe, update } from './store.js';
import { drawStrip, mountStrip } from './tokens.js';
import { downloadReport } from './report.js';
import { openExperiments } from './experiments.js';
import { initTutorial, resumeTutorial, startTutorial } from './tutorial.js';
import { mountCounter, showCount, startAnalysing, stopAnalysing } from './promptbar.js';
import { keepFocus } from './focus.js';

const $ = (id) => document.getElementById(id);
export const timings = { lastRenderMs: 0, analyses: [], requests: [] }; // read by the benchmark

function message(text) {
  const el = $('message');
  el.textContent = text || '';
  el.hidden = !text;
}

function buildTabs() {
  const tabs = $('tabs');
  for (const [id] of PANEL_ORDER) {
    const b = h('button', {
      type: 'button', role: 'tab', id: `tab-${id}`, 'aria-controls': 'panel', dataset: { panel: id },
      title: TEXTS[id].see,
    }, TEXTS[id].title);
    b.addEventListener('click', () => update({ panel: id }));
    tabs.append(b);
  }
  tabs.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const ids = PANEL_ORDER.map(([id]) => id);
    const i = ids.indexOf(state.panel) + (ev.key === 'ArrowRight' ? 1 : -1);
    const next = ids[(i + ids.length) % ids.length];
    update({ panel: next });
    $(`tab-${next}`).focus();
  });
}

/** Draw the visible panel from what is cached (synchronous; panels fetch what they miss themselves). */
export function renderPanel() {
  const t0 = performance.now();
  for (const b of $('tabs').children) {
    const on = b.dataset.panel === state.panel;
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
  }
  const root = $('panel');
  root.setAttribute('aria-labelledby', `tab-${state.panel}`);
  root.dataset.panel = state.panel;
  keepFocus(root, () => {
    if (!state.tokens.length) {
      root.replaceChildren(h('p.muted', {}, 'Type a prompt and press Analyse (or Ctrl+Enter). Every panel then explains one view of what happens inside the model.'));
      return;
    }
    try {
      PANELS[state.panel].render(root);
    } catch (err) {
      root.append(h('p.error', { role: 'alert' }, `This panel failed to draw: ${err.message}`));
      console.error(err);
    }
  });
  timings.lastRenderMs = performance.now() - t0;
  root.dataset.renderMs = timings.lastRenderMs.toFixed(1);
}

export async function analyse(prompt) {
  prompt = prompt.trim() ? prompt : '';
  if (!prompt) {
    message('Type a prompt first.');
    return;
  }
  message('');
  stopPrefetch();
  const t0 = performance.now();
  $('analyse').disabled = true;
  document.body.dataset.analysis = 'running'; // dims the old strip and panel at once (app.css)
  startAnalysing($('analyse-status'));
  try {
    const ov = await call(...Q.overview(prompt));
    timings.requests.push(performance.now() - t0);
    learnPatterns(ov.attention);
    const tokens = ov.attention.tokens.map((token, position) => ({ position, token, token_id: '' }));
    update({ prompt, tokens, position: tokens.length - 1, layer: null, head: null, ablate: [], hover: null });
    drawStrip();
    timings.analyses.push(performance.now() - t0);
    document.body.dataset.analysis = 'done';
    prefetch();
  } catch (err) {
    message(err.message);
    document.body.dataset.analysis = 'failed';
  } finally {
    stopAnalysing($('analyse-status'));
    $('analyse').disabled = false;
  }
}

async function loadModelInfo() {
  const m = await request('GET', '/api/model');
  update({ model: m });
  $('model-name').textContent = m.name;
  $('model-name').title = `${m.name}: ${plural(m.n_layers, 'layer')}, ${plural(m.n_heads, 'head')} per layer, d_model ${m.d_model}, vocabulary ${m.vocab_size}; loaded from ${m.source}`;
  try {
    Object.assign(sae, listed(await request('GET', '/api/saes')));
  } catch {
    Object.assign(sae, { list: [], training: null }); // a server without SAE endpoints: the panel says none is available
  }
}

async function switchModel(source) {
  const status = $('model-status');
  const bar = $('model-progress');
  bar.hidden = false;
  $('model-load').disabled = true;
  try {
    const j = await pollJob(await request('POST', '/api/model/load', { source }), (p) => {
      status.textContent = p.stage || p.status;
      if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute('value');
    });
    if (j.status !== 'done') throw new Error(plain(j.error || `loading was ${j.status}`));
    status.textContent = `loaded in ${j.result?.load_s ?? '?'} s`;
    forget();
    await loadModelInfo();
    if (state.prompt) await analyse(state.prompt);
  } catch (err) {
    status.textContent = '';
    message(`Could not load "${source}": ${err.message}`);
  } finally {
    bar.hidden = true;
    $('model-load').disabled = false;
  }
}

function wire() {
  const prompt = $('prompt');
  prompt.title = CONTROLS.prompt;
  $('analyse').title = CONTROLS.analyse;
  $('model-source').title = CONTROLS.model;
  $('model-load').title = CONTROLS.loadModel;
  $('scale').title = CONTROLS.scale;
  $('report-btn').title = CONTROLS.report;
  $('save-btn').title = CONTROLS.save;
  $('open-btn').title = CONTROLS.open;
  $('tutorial-btn').title = CONTROLS.tutorial;
  $('analyse').addEventListener('click', () => analyse(prompt.value));
  prompt.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      analyse(prompt.value);
    }
  });
  for (const b of document.querySelectorAll('button.demo')) {
    b.title = 'Use this example prompt';
    b.addEventListener('click', () => {
      prompt.value = b.dataset.prompt;
      analyse(prompt.value);
    });
  }
  $('model-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const source = $('model-source').value.trim();
    if (!source) message('Type a hub id (e.g. gpt2), a model folder or a .gguf file to load.');
    else switchModel(source);
  });
  $('scale').value = settings.sequential;
  $('scale').addEventListener('change', () => {
    saveSettings({ sequential: $('scale').value });
    renderPanel();
  });
  $('report-btn').addEventListener('click', () => downloadReport().catch((err) => message(err.message)));
  $('save-btn').addEventListener('click', () => openExperiments(true));
  $('open-btn').addEventListener('click', () => openExperiments(false));
  $('tutorial-btn').addEventListener('click', () => startTutorial());
  initTutorial(analyse);
  mountStrip($('tokens'));
  mountCounter(prompt, $('prompt-count'));
  onDataArrived(renderPanel);
  subscribe((changed) => {
    if (changed.includes('tokens') && prompt.value === state.prompt) showCount(state.tokens.length);
    if (changed.includes('position')) drawStrip();
    if (changed.some((k) => ['panel', 'position', 'layer', 'head', 'agg', 'ablate', 'prompt', 'tokens'].includes(k))) renderPanel();
  });
}

async function main() {
  try {
    await loadExplanations();
  } catch (err) {
    message(err.message);
    return;
  }
  buildTabs();
  wire();
  renderPanel();
  try {
    await loadModelInfo();
  } catch (err) {
    message(err.message);
    $('model-name').textContent = 'not connected';
  }
  document.body.dataset.ready = 'true';
  resumeTutorial();
}

main();

// For the browser tests and the benchmark: the app's state, timings and an analyse() entry point.
window.glasslab = { state, timings, prefetchTimes, analyse, job };
