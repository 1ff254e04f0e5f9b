// The attribution graph: the prompt's next token explained through transcoder features. The user picks a
// transcoder set from the store (transcoder-sets), or builds one when there is none (graphbuild.js), and builds
// the graph (the graph job, with progress); the panel draws it (graphview.js, shared with the standalone
// graph.html), with a pruning slider, hover scores, click-to-select details, supernodes, an intervention on
// selected features and the Neuronpedia export.

import { download, fmt, h, hideTip, plural, showTip, showToken, slug } from '../dom.js';
import { call, cached, job } from '../api.js';
import { render as chartMode } from '../chart.js';
import { CONTROLS } from '../explain.js';
import { drawGraph } from '../graphview.js';
import { setting, setSetting, state } from '../store.js';
import { action, button, errorLine, field, frame, need, progressText, refresh } from './common.js';
import { buildBox, builtNote } from './graphbuild.js';
import { details, hoverText, intervention, merged } from './graphselect.js';

const SETS = ['transcoder-sets', {}];
// What the user did with the graph on screen; kept across re-renders, reset when another graph is shown.
// share: the edges first shown carry half the total |weight|; every edge of a real model's graph is a tangle.
const ui = { key: null, selected: new Set(), groups: [], count: 0, share: 0.5, multiple: 0, intervened: null };

function chosenSet(sets) {
  const pick = setting('graph', 'set', null);
  return sets.some((s) => s.name === pick) ? pick : sets[0]?.name ?? null;
}

/** The graph's request: the prompt, the set and, when typed, one target token. */
function graphBody(set) {
  const target = setting('graph', 'target', '');
  return target ? { prompt: state.prompt, transcoders: set, target } : { prompt: state.prompt, transcoders: set };
}

export function render(root) {
  const el = frame(root, 'graph');
  const listed = need(el, 'the transcoder sets in your store', () => cached(...SETS), () => call(...SETS));
  if (!listed) return;
  if (!listed.sets.length) {
    buildBox(el, listed);
    return;
  }
  builtNote(el, listed.model);
  const set = chosenSet(listed.sets);
  const body = graphBody(set);
  const out = h('div.results');
  if (!chartMode.report) el.append(controls(listed.sets, set, body, out));
  el.append(out);
  const graph = cached('graph', body);
  if (!graph) {
    out.append(h('p.muted', {}, `No graph yet for this prompt with ${set}: press Build the graph (it can take a while on a large model).`));
    return;
  }
  const key = JSON.stringify(body);
  if (ui.key !== key) Object.assign(ui, { key, selected: new Set(), groups: [], count: 0, intervened: null });
  showGraph(out, graph, body);
}

function controls(sets, set, body, out) {
  const pick = h('select#graph-set', {}, ...sets.map((s) => h('option', { value: s.name, selected: s.name === set },
    `${s.name} (${s.summary.architecture ?? 'transcoders'}, ${plural(s.summary.layers ?? 0, 'layer')}, ${s.summary.d_sae ?? '?'} features each)`)));
  pick.addEventListener('change', () => { setSetting('graph', 'set', pick.value); refresh(); });
  const target = h('input#graph-target', { type: 'text', value: setting('graph', 'target', ''), placeholder: 'top predictions', size: 14 });
  target.addEventListener('change', () => { setSetting('graph', 'target', target.value); refresh(); });
  const build = action('Build the graph', 'Compute the attribution graph of the next token (a job; can take a while)', async (say) => {
    await job('graph', body, (j) => say(`Building the graph: ${progressText(j)}`));
  }, out);
  return h('div.controls.no-report', {}, field('Transcoder set', pick, CONTROLS.graphSet), field('Target token', target, CONTROLS.graphTarget), build);
}

function facts(graph) {
  const targets = graph.targets.slice(0, 4).map((t) => `${t.label ? showToken(t.label) : `#${t.token}`} (p ${fmt(t.probability)})`).join(', ');
  const rows = [['replacement', 'replacement'], ['completeness', 'completeness']].map(([name, k]) => h('tr', {},
    h('td', {}, `${name} score`), h('td', {}, fmt(graph.scores[k])), h('td', {}, fmt(graph.pruned_scores[k]))));
  return [
    h('p.facts.graph-facts', {}, `Targets: ${targets}${graph.targets.length > 4 ? ', \u2026' : ''}. Kept ${plural(graph.nodes.length, 'node')} and `
      + `${plural(graph.edges.length, 'edge')} of ${graph.n_feature_nodes} feature nodes (${graph.n_active_features} active features); `
      + `replay error ${fmt(graph.replay_error)}.`),
    h('table.compare.graph-scores', {}, h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'full graph'), h('th', {}, 'pruned graph'))), h('tbody', {}, ...rows)),
  ];
}

function showGraph(out, graph, body) {
  out.append(...facts(graph));
  const canvas = h('div.graph-canvas');
  const side = h('div.graph-side');
  const slider = h('input#graph-share', { type: 'range', min: '1', max: '100', value: String(Math.round(ui.share * 100)) });
  const sliderText = h('span.graph-share-text');
  if (!chartMode.report) {
    out.append(h('div.controls.no-report', {},
      field('Edges shown', slider, CONTROLS.graphShare), sliderText,
      h('span.small', {}, 'Blue edges push up, red push down; thickness = |weight|. Orange circles: features; grey squares: error nodes; green: tokens; purple: targets; pink: supernodes.'),
      button('Neuronpedia JSON', 'Download the graph as the JSON Neuronpedia\u2019s and circuit-tracer\u2019s graph viewers read', async (ev) => {
        ev.target.disabled = true;
        try {
          download(`${slug(state.prompt)}-graph.json`, JSON.stringify(await call('graph-neuronpedia', body), null, 1), 'application/json');
        } catch (err) {
          out.append(errorLine(err));
        } finally {
          ev.target.disabled = false;
        }
      }, 'small'),
      button('JSON', 'Download the graph as the API answered it', () => download(`${slug(state.prompt)}-graph-api.json`, JSON.stringify(graph, null, 1), 'application/json'), 'small')));
  }
  out.append(h('div.graph-layout', {}, canvas, side));
  const details_ = h('div.graph-details');
  const check = h('section.graph-check');
  side.append(details_, check);
  const drawn = merged(graph, ui.groups);
  const redraw = () => refresh();
  const update = () => {
    view.show({ share: ui.share, chosen: ui.selected });
    sliderText.textContent = `${slider.value}% of the total |weight|: ${canvas.querySelector('svg').dataset.edgesShown} of ${drawn.edges.length} edges`;
    details(details_, drawn, ui, redraw);
    if (!chartMode.report) intervention(check, graph, body, ui);
  };
  const view = drawGraph(canvas, drawn, state.model.n_layers, {
    hover: (n, ev) => showTip(hoverText(n, graph.tokens), ev.clientX, ev.clientY),
    leave: hideTip,
    click: (n, ev) => {
      if (ev.shiftKey) { if (!ui.selected.delete(n.id)) ui.selected.add(n.id); } else ui.selected = ui.selected.has(n.id) && ui.selected.size === 1 ? new Set() : new Set([n.id]);
      update();
    },
    background: () => { ui.selected = new Set(); update(); },
  });
  view.svg.setAttribute('role', 'img');
  view.svg.setAttribute('aria-label', `Attribution graph of ${state.prompt}`);
  slider.addEventListener('input', () => { ui.share = Number(slider.value) / 100; update(); });
  update();
}
