// SAE features per token, a feature's dashboard (its label, editable) and links to Neuronpedia. Dense
// features (firing on more than 10% of tokens) are hidden from the bars unless the user shows them; every
// bar has a one-click clamp. The SAEs come from GET /api/saes
// (shipped, trained into the store, or known hub releases), each with its layer; the user picks a layer, then
// one of its SAEs on this machine. For a layer with none, the panel offers to train one (sae-train-estimate,
// then the sae-train job) and shows its progress; the finished SAE joins the list.

import { fmt, h, pct, plural, showToken } from '../dom.js';
import { call, cached, job, pollJob, request } from '../api.js';
import { chart } from '../chart.js';
import { plain } from '../errors.js';
import { CONTROLS } from '../explain.js';
import { position, setting, setSetting, state } from '../store.js';
import { clusterChoice, clusterParams } from './clusterchoice.js';
import { button, errorLine, field, frame, need, progressText, refresh } from './common.js';
import { dashboardFacts, dashboardView } from './dashboardview.js';
import { featureClamp } from './featureclamp.js';
import { featureDemo } from './featuredemo.js';
import { detectionLine, precomputeBox } from './saeprecompute.js';
import { featureSearch } from './saesearch.js';
import { featureLabel } from './featurelabel.js';

export const sae = { list: [], training: null }; // GET /api/saes (saes, training), read when the model is loaded

/** What the page keeps of GET /api/saes: the SAEs and the default plan of a training from the workbench. */
export function listed(answer) {
  return { list: answer.saes || [], training: answer.training || null };
}

const SOURCE = { shipped: 'shipped', store: 'trained', hub: 'hub' };

export function usable() {
  return sae.list.filter((s) => s.on_disk);
}

/** Layers are keyed as strings; an SAE on a hook outside the blocks (embed, ln_final) is under 'other'. */
const layerKey = (s) => (s.layer === null || s.layer === undefined ? 'other' : String(s.layer));

function layerKeys() {
  const keys = [...Array(state.model?.n_layers ?? 0).keys()].map(String);
  return sae.list.some((s) => layerKey(s) === 'other') ? [...keys, 'other'] : keys;
}

export function chosenLayer() {
  const keys = layerKeys();
  const pick = setting('sae', 'layer', null);
  if (pick !== null && keys.includes(pick)) return pick;
  const first = usable()[0];
  return first ? layerKey(first) : String(Math.floor((state.model?.n_layers ?? 0) / 2));
}

/** The SAE every SAE view uses: the chosen one at the chosen layer, else that layer's first on disk (or null). */
export function chosenSae() {
  const here = usable().filter((s) => layerKey(s) === chosenLayer());
  const pick = setting('sae', 'name', null);
  return (here.find((s) => s.name === pick) ?? here[0])?.name ?? null;
}

function choose(s) {
  setSetting('sae', 'layer', layerKey(s));
  setSetting('sae', 'name', s.name);
}

function layerLabel(key) {
  const here = sae.list.filter((s) => layerKey(s) === key);
  const name = key === 'other' ? 'Other hooks' : `Layer ${key}`;
  if (!here.length) return `${name}: no SAE yet`;
  const disk = here.filter((s) => s.on_disk);
  const kinds = [...new Set(here.map((s) => SOURCE[s.source] ?? s.source))].join(', ');
  if (!disk.length) return `${name}: ${kinds}, not on this machine`;
  if (disk.length === 1) return `${name}: ${disk[0].name} (${SOURCE[disk[0].source] ?? disk[0].source})`;
  return `${name}: ${disk.length} SAEs on this machine (${kinds})`;
}

/** The layer selector of the SAE panel, and the choice among that layer's SAEs. */
function layerPicker() {
  const current = chosenLayer();
  const layers = h('select#sae-layer', {}, ...layerKeys().map((k) => h('option', { value: k, selected: k === current }, layerLabel(k))));
  layers.addEventListener('change', () => { setSetting('sae', 'layer', layers.value); setSetting('sae', 'feature', undefined); refresh(); });
  const controls = [field('Layer', layers, CONTROLS.saeLayer)];
  const here = sae.list.filter((s) => layerKey(s) === current);
  if (here.length) {
    const name = chosenSae();
    const pick = h('select#sae-name', {}, ...here.map((s) => h('option', { value: s.name, selected: s.name === name, disabled: !s.on_disk },
      `${s.name} (${SOURCE[s.source] ?? s.source}, ${s.hook}, ${s.d_sae ? `${s.d_sae} features` : 'width unknown'}${s.on_disk ? '' : ', not on this machine'})`)));
    pick.addEventListener('change', () => { setSetting('sae', 'name', pick.value); setSetting('sae', 'feature', undefined); refresh(); });
    controls.push(field('SAE at this layer', pick, CONTROLS.saeAtLayer));
  }
  return h('div.controls.no-report', {}, ...controls);
}

/** The SAE choice of other panels (feature clamps): every SAE on this machine, by layer. */
export function saePicker(panel) {
  const saes = usable();
  const current = chosenSae();
  const none = current ? null : h('option', { value: '', selected: true, disabled: true }, 'Choose an SAE');
  const select = h('select', { id: `${panel}-sae` }, none, ...saes.map((s) => h('option', { value: s.name, selected: s.name === current },
    `${layerKey(s) === 'other' ? '' : `Layer ${s.layer}: `}${s.name} (${SOURCE[s.source] ?? s.source}, ${s.d_sae} features)`)));
  select.addEventListener('change', () => { choose(saes.find((s) => s.name === select.value)); refresh(); });
  return field('Sparse autoencoder', select, 'Which SAE reads the activations (only SAEs on this machine are listed; pick a layer or train one in the SAE features panel)');
}

function noSaeHere(el, key) {
  const hub = sae.list.filter((s) => layerKey(s) === key && !s.on_disk);
  const where = key === 'other' ? 'these hooks' : `layer ${key}`;
  el.append(h('p.empty-state', { role: 'note' }, `No SAE for ${where} of ${state.model?.name ?? 'the loaded model'} is on this machine. `,
    hub.length ? `${hub.length} SAE${hub.length > 1 ? 's are' : ' is'} known for it on the Hugging Face hub (${hub.map((s) => s.name).join(', ')}); download one on a connected machine to use it here, or train one below. ` : '',
    usable().length ? 'Other layers have one: pick one in the list above. ' : ''));
}

// -- training an SAE for a layer ------------------------------------------------------------------------
// One training at a time from this page; its state survives re-renders and panel switches, and its progress
// is written into the panel in place (no re-render every poll).
// onCluster: the box ticked to train on the server's Ray cluster (GET /api/model `cluster`; only when it has one).
const training = { estimates: {}, measuring: null, job: null, layer: null, model: null, error: null, outcome: null, onCluster: false };

function duration(s) {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

/** The job's body: the layer and the sizes the server proposes (GET /api/saes `training`). */
function trainBody(key) {
  const { architecture, d_sae, ...sizes } = sae.training ?? {};
  return { layer: Number(key), ...sizes };
}
const estimateKey = (key) => `${state.model?.name}|${key}`;

/** Run a job to its end, reporting each poll; never served from the page's cache (timings change). */
async function poll(kind, params, onProgress) {
  return pollJob(await request('POST', '/api/jobs', { kind, params }), onProgress);
}

function liveStatus(text) {
  const status = document.querySelector('#panel .train-status');
  if (status) status.textContent = text;
}

async function estimate(key) {
  Object.assign(training, { measuring: key, layer: key, error: null });
  refresh();
  try {
    const j = await poll('sae-train-estimate', trainBody(key), (p) => liveStatus(`Measuring this machine (${p.stage})\u2026`));
    if (j.status === 'done') training.estimates[estimateKey(key)] = j.result;
    else training.error = plain(j.error || `the estimate was ${j.status}`);
  } catch (err) {
    training.error = String(err.message || err);
  }
  training.measuring = null;
  refresh();
}

/** The share of the estimated work a running training has done (its stages in order, each in proportion). */
function shareDone(j, est) {
  const stages = [['reading activations from the model', est.harvest_s], ['training', est.train_s], ['evaluating on held-out text', est.evaluate_s]];
  const at = stages.findIndex(([stage]) => stage === j.stage);
  if (at < 0) return 0;
  const before = stages.slice(0, at).reduce((sum, [, s]) => sum + s, est.fixed_s + est.text_s);
  return (before + stages[at][1] * (j.total ? Math.min(1, j.done / j.total) : 0)) / est.seconds;
}

function trainingLine(j) {
  const m = j.metrics;
  const counts = !j.total ? '' : j.stage === 'training' ? ` step ${j.done} / ${j.total}` : ` ${j.done.toLocaleString()} / ${j.total.toLocaleString()} tokens`;
  const figures = m ? `; fraction of variance explained ${fmt(m.fve)}, dead features ${pct(m.dead)}, L0 ${fmt(m.l0, 1)}` : '';
  const est = training.estimates[estimateKey(training.layer)];
  // The rest of the estimated work at the pace seen so far: other work on the machine changes the pace.
  const share = est ? shareDone(j, est) : 0;
  const left = share > 0.05 ? `, about ${duration((j.elapsed_s * (1 - share)) / share)} left at the pace so far`
    : est ? `, about ${duration(Math.max(0, est.seconds - j.elapsed_s))} left by the estimate` : '';
  return `${j.stage[0].toUpperCase()}${j.stage.slice(1)}${counts ? `:${counts}` : ''}${figures}. ${duration(j.elapsed_s)} so far${left}.`;
}

function showProgress(j) {
  liveStatus(trainingLine(j));
  const bar = document.querySelector('#panel progress.train-progress');
  if (bar && j.total) {
    bar.max = j.total;
    bar.value = j.done;
  }
}

async function train(key) {
  Object.assign(training, { layer: key, model: state.model?.name, error: null, outcome: null, job: null });
  try {
    const j = await poll('sae-train', { ...trainBody(key), ...clusterParams(training) }, (p) => {
      const first = !training.job;
      training.job = p;
      if (first) refresh();
      else showProgress(p);
    });
    if (j.status === 'done') {
      Object.assign(sae, listed(await request('GET', '/api/saes')));
      const made = sae.list.find((s) => s.name === j.result.name);
      if (made) choose(made);
      training.outcome = j.result;
    } else {
      training.error = j.status === 'cancelled' ? 'Training cancelled; no SAE was saved.' : plain(j.error || `the training ${j.status}`);
    }
  } catch (err) {
    training.error = String(err.message || err);
  }
  training.job = null;
  refresh();
}

function trainBox(el, key) {
  if (key === 'other') return;
  const m = state.model;
  const box = h('section.train-sae.no-report');
  el.append(box);
  box.append(h('h3', {}, `Train an SAE for layer ${key}`));
  const t = sae.training;
  if (t) {
    box.append(h('p', {}, `glasslab can train a rough SAE here: a TopK SAE with ${t.d_sae.toLocaleString()} features (${t.k} active per token) on `,
      h('code', {}, `blocks.${key}.resid_post`), `, from the built-in offline text: ${t.harvest_tokens.toLocaleString()} tokens read from the model, `,
      `${Math.floor(t.tokens / t.batch_size)} training steps of ${t.batch_size.toLocaleString()}, then a check on ${t.evaluate_tokens.toLocaleString()} `,
      'held-out tokens. For the default model this takes a few minutes on two CPU cores (later layers take longer); measure it first. ',
      'The workbench keeps working meanwhile. The SAE is saved in your glasslab store and listed here when done.'));
  }
  const status = h('p.train-status', { role: 'status', 'aria-live': 'polite' });
  box.append(status);
  if (training.job && training.model === m?.name) {
    const j = training.job;
    if (training.layer !== key) {
      status.textContent = `An SAE for layer ${training.layer} is being trained; one training at a time.`;
      return;
    }
    status.textContent = trainingLine(j);
    box.append(h('progress.train-progress', { title: 'Progress of the current stage of the SAE training', max: j.total || 1, value: j.done || 0 }),
      h('div.controls', {}, button('Cancel training', CONTROLS.saeCancel, (ev) => {
        ev.target.disabled = true;
        request('POST', `/api/jobs/${j.id}/cancel`).catch(() => {});
      })));
    return;
  }
  if (training.measuring !== null) {
    status.textContent = training.measuring === key ? 'Measuring this machine\u2026' : `Measuring the time for layer ${training.measuring}\u2026`;
    return;
  }
  if (training.error && training.layer === key) box.append(errorLine(training.error));
  const est = training.estimates[estimateKey(key)];
  if (est) {
    status.textContent = `Estimated time on this machine: about ${duration(est.seconds)} (reading activations ${duration(est.harvest_s)}, `
      + `training ${duration(est.train_s)}, held-out check ${duration(est.evaluate_s)}, the rest ${duration(est.text_s + est.fixed_s)}), `
      + `measured just now from one batch of activations and a few training steps (other work on this machine can change it). `
      + `It will be saved as ${est.plan.name}.`;
  }
  clusterChoice(box, training, 'sae-on-cluster', 'Ray workers then load the model, read the activations and share every training step, '
    + 'and this machine only checks the finished SAE (the time estimate is still measured here).');
  box.append(h('div.controls', {},
    button(est ? 'Measure again' : 'Estimate the time', CONTROLS.saeEstimate, () => estimate(key)),
    est ? button(`Train the SAE (about ${duration(est.seconds)})`, CONTROLS.saeTrain, () => train(key), 'primary') : null));
}

function trainedNote(el) {
  const r = training.outcome;
  if (!r || r.name !== chosenSae()) return;
  const ev = r.evaluation;
  el.append(h('p.facts.trained-note', {}, `${r.name} was trained ${r.workers ? `on the Ray cluster (${plural(r.workers, 'worker')})` : 'here'} in ${duration(r.seconds)} (${plural(r.steps, 'step')}). `,
    ev ? `On ${ev.tokens.toLocaleString()} held-out tokens it explains ${pct(ev.fve)} of the activation's variance with ${fmt(ev.l0, 1)} features per token; ${pct(ev.dead_fraction)} of its features never fired there. ` : '',
    'A quick SAE is rough: treat its features as hints.'));
}

const TOP = 10; // features drawn per token
// Dense features fire almost everywhere and crowd out the informative ones; glasslab's SAE evaluation uses the
// same threshold. The server sets them apart (max_density), so the bars still get the 10 strongest others.
const DENSE = 0.1;
const featuresBody = () => ({ prompt: state.prompt, sae: chosenSae(), top: TOP, max_density: DENSE });
const clamping = { feature: null }; // a clamp asked for from the bars, started once the dashboard is here
/** A feature's dashboard request (the Steering tab reads the features' strongest activations from the same). */
// No corpus sizes: the server reads the SAE's precomputed dashboards when it has them, else scans live.
export const dashboardBody = (feature, name = chosenSae()) => ({ feature, sae: name, k: 10 });

/** The listed entry of SAE `name` (GET /api/saes), e.g. whether its dashboards are precomputed. */
const entry = (name) => sae.list.find((s) => s.name === name) ?? {};

export function render(root) {
  const el = frame(root, 'sae');
  el.append(layerPicker());
  featureDemo(el, sae.list);
  if (!chosenSae()) {
    noSaeHere(el, chosenLayer());
    trainBox(el, chosenLayer());
    return;
  }
  trainedNote(el);
  precomputeBox(el, chosenSae(), entry(chosenSae()));
  featureSearch(el, chosenSae());
  const p = position();
  const d = need(el, 'the SAE features of the prompt', () => cached('sae-features', featuresBody()), () => call('sae-features', featuresBody()));
  if (!d) return;
  const tok = (d.tokens || []).find((t) => t.position === p);
  if (!tok) {
    el.append(h('p.muted', {}, `The SAE at ${d.hook} reports nothing at position ${p} (SAEs usually skip the BOS token): select another token.`));
    return;
  }
  el.append(h('p.facts.sae-facts', {}, `${d.sae_name ?? d.sae} at ${d.hook}: ${plural(tok.l0, 'feature fires', 'features fire')} at position ${p} `, h('code', {}, showToken(tok.token)),
    `; the SAE misses ${pct(tok.relative_error)} of the activation (cosine ${fmt(tok.cosine)}).`));
  const shown = shownFeatures(el, tok);
  if (!shown.length && tok.dense?.length) {
    el.append(h('p.muted.all-dense', {}, `Every feature active at position ${p} is dense (fires on more than ${pct(DENSE)} of tokens): tick “Show dense features” to see them.`));
  }
  const feature = Number(setting('sae', 'feature', shown[0]?.feature ?? -1));
  const pick = (f, clamp) => {
    setSetting('sae', 'feature', f);
    clamping.feature = clamp ? f : null;
    refresh();
  };
  chart(el, {
    kind: 'bars',
    title: `Most active features at position ${p} (click one for its dashboard and clamp)`,
    labels: shown.map((f) => `F${f.feature}${f.label ? ` ${f.label}` : ''}${f.detection != null ? ` [label F1 ${fmt(f.detection, 2)}]` : ''}${f.density > DENSE ? ` (dense: ${pct(f.density)} of tokens)` : ''}`),
    values: shown.map((f) => f.activation),
    selected: shown.findIndex((f) => f.feature === feature),
    valueLabel: 'feature activation',
  }, { json: d, onBar: (i) => pick(shown[i].feature, false) });
  if (shown.length) {
    el.append(h('div.feature-clamps.no-report', {}, h('span.small', {}, 'Clamp: '), ...shown.map((f) => button(`F${f.feature}`,
      `Clamp feature ${f.feature} at 0, 1×, 2× and 4× its strongest activation while the model continues the prompt (opens its dashboard)`,
      () => pick(f.feature, true), 'small'))));
  }
  if (d.neuronpedia) {
    el.append(h('p.small', {}, 'On Neuronpedia (a public website, needs internet): ', ...shown.map((f) => [h('a', {
      href: d.neuronpedia.replace('{feature}', f.feature), target: '_blank', rel: 'noopener noreferrer', title: `Feature ${f.feature} on Neuronpedia`,
    }, `F${f.feature}`), ' '])));
  }
  if (feature >= 0) dashboard(el, feature);
}

/** The features drawn for token `tok`: its strongest non-dense ones, or with dense ones when the user shows
 * them; a toggle above the bars says how many dense ones are hidden. */
function shownFeatures(el, tok) {
  const dense = tok.dense || [];
  const showDense = setting('sae', 'dense', false);
  const toggle = h('input#sae-dense', { type: 'checkbox', checked: showDense });
  toggle.addEventListener('change', () => { setSetting('sae', 'dense', toggle.checked); refresh(); });
  const count = showDense ? `${dense.length} shown` : `${dense.length} hidden`;
  el.append(h('div.controls.no-report.dense-toggle', {}, h('label.check', {
    title: `Features that fire on more than ${pct(DENSE)} of tokens (by the SAE's labels or training) say little about this token`,
  }, toggle, ` Show dense features (${count})`)));
  return showDense ? [...tok.top, ...dense].sort((a, b) => b.activation - a.activation).slice(0, TOP) : tok.top;
}

function dashboard(el, feature) {
  const body = dashboardBody(feature);
  const box = h('section.dashboard');
  el.append(box);
  box.append(h('h3', {}, `Feature ${feature}: dashboard`));
  const how = entry(body.sae).precomputed ? 'reading its precomputed dashboard' : 'scanning the built-in corpus';
  const dash = need(box, `the dashboard of feature ${feature} (${how})`, () => cached('sae-dashboard', body), () => job('sae-dashboard', body, (j) => {
    const line = box.querySelector('.loading');
    if (line) line.textContent = `Scanning the corpus for feature ${feature}: ${progressText(j)}`;
  }));
  if (!dash) return;
  featureLabel(box, body.sae, feature, dash);
  box.append(dashboardFacts(dash));
  detectionLine(box, dash.label);
  const start = clamping.feature === feature;
  if (start) clamping.feature = null;
  featureClamp(box, body.sae, feature, dash, { start });
  dashboardView(box, dash, feature);
}
