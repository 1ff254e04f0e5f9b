// Building a transcoder set from the attribution-graph panel when the model has none: the time is measured
// once per model (the transcoders-estimate job) and shown on the "Build transcoders" button, which starts the
// transcoders-train job (the server's default sizes) with progress and cancel; when it is done the set list is
// fetched again and the panel drawn with the new set. On a server started with a Ray cluster a tick box sends
// the build there (the cluster harvests, then trains). The texts are the explanation registry's
// (RESULTS.transcoder_training); only the button labels and the cluster's note are written here.

import { pollJob, remember, request } from '../api.js';
import { h } from '../dom.js';
import { RESULTS } from '../explain.js';
import { state } from '../store.js';
import { clusterChoice, clusterParams } from './clusterchoice.js';
import { button, errorLine, refresh } from './common.js';

// One build at a time from this page; its state survives re-renders and panel switches.
// onCluster: the box ticked to build on the server's Ray cluster (clusterchoice.js).
const build = { estimates: {}, measuring: null, job: null, model: null, error: null, done: null, onCluster: false };

const fill = (text, values) => String(text ?? '').replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ''));
const notes = () => RESULTS.transcoder_training?.notes ?? {};
const minutes = (s) => (Number.isFinite(s) ? Math.max(1, Math.round(s / 60)) : '?');

async function poll(kind, params, onProgress) {
  return pollJob(await request('POST', '/api/jobs', { kind, params }), onProgress);
}

function liveStatus(text) {
  const status = document.querySelector('#panel .build-status');
  if (status) status.textContent = text;
}

async function measure(model) {
  build.measuring = model;
  build.error = null;
  try {
    const j = await poll('transcoders-estimate', {}, () => {});
    if (j.status === 'done') build.estimates[model] = j.result;
    else build.error = j.error || `the estimate was ${j.status}`;
  } catch (err) {
    build.error = String(err.message || err);
  }
  build.measuring = null;
  refresh();
}

function runningLine(j) {
  const share = j.total ? ` ${Math.round((100 * Math.min(j.done, j.total)) / j.total)}%` : '';
  const fve = j.metrics?.fve != null ? `, mean FVE ${j.metrics.fve.toFixed(3)}` : '';
  return fill(notes().running, { stage: j.stage, share: `${share}${fve}`, elapsed: `${Math.round(j.elapsed_s)} s` });
}

async function start(model) {
  Object.assign(build, { model, error: null, done: null, job: null });
  try {
    const j = await poll('transcoders-train', clusterParams(build), (p) => {
      const first = !build.job;
      build.job = p;
      if (first) refresh();
      else liveStatus(runningLine(p));
    });
    if (j.status === 'done') {
      build.done = j.result;
      remember('transcoder-sets', {}, await request('POST', '/api/transcoder-sets', {}));
    } else build.error = j.status === 'cancelled' ? notes().cancelled : j.error || `the build ${j.status}`;
  } catch (err) {
    build.error = String(err.message || err);
  }
  build.job = null;
  refresh();
}

/** The note that the model has no set, and the box that builds one. */
export function buildBox(el, listed) {
  const model = listed.model;
  el.append(h('p.empty-state', { role: 'note' }, fill(notes().none, { model })));
  const box = h('section.build-transcoders.no-report');
  const status = h('p.build-status', { role: 'status', 'aria-live': 'polite' });
  box.append(h('h3', {}, RESULTS.transcoder_training?.title ?? ''), h('p.see', {}, RESULTS.transcoder_training?.see ?? ''), status);
  el.append(box);
  if (build.job && build.model === model) {
    const j = build.job;
    status.textContent = runningLine(j);
    box.append(h('div.controls', {}, button('Cancel', RESULTS.transcoder_training?.caveat ?? '', (ev) => {
      ev.target.disabled = true;
      request('POST', `/api/jobs/${j.id}/cancel`).catch(() => {});
    })));
    return;
  }
  if (build.error && build.model === model) box.append(errorLine(build.error));
  const est = build.estimates[model];
  if (est) {
    status.textContent = fill(notes().estimate, { minutes: minutes(est.seconds), layers: est.layers, d_sae: est.plan.d_sae, name: est.plan.name });
  } else {
    status.textContent = notes().measuring ?? '';
    if (build.measuring !== model && !(build.error && build.model === model)) {
      build.model = model;
      measure(model);
    }
  }
  clusterChoice(box, build, 'transcoders-on-cluster', 'Ray workers then load the model, harvest every layer\'s MLP inputs '
    + 'and outputs and share every training step; this machine only checks the finished set (the time estimate is still measured here).');
  box.append(h('div.controls', {}, button(est ? `Build transcoders (about ${minutes(est.seconds)} min)` : 'Build transcoders',
    RESULTS.transcoder_training?.read ?? '', () => start(model), 'primary build-start')));
  box.append(h('p.caveat', {}, h('strong', {}, 'What it does not prove. '), RESULTS.transcoder_training?.caveat ?? ''));
}

/** After a build, one line saying it is done (shown above the graph's controls). */
export function builtNote(el, model) {
  const r = build.done;
  if (!r || build.model !== model) return;
  el.append(h('p.facts.built-note', {}, fill(notes().done, { name: r.name, minutes: minutes(r.seconds) })));
}
