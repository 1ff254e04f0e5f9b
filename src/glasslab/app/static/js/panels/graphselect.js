// What the attribution-graph panel does with selected nodes: their details, grouping them into a supernode
// (client-side: one merged node, the edges to and from its members summed), and setting the selected
// features to a multiple of their activation to compare the graph's prediction with the model's change
// (the graph-intervene job).

import { fmt, h, plural, showToken, signed } from '../dom.js';
import { cached, job } from '../api.js';
import { CONTROLS, RESULTS } from '../explain.js';
import { errorLine, field, need, progressText } from './common.js';
import { dashboardFacts, dashboardView } from './dashboardview.js';

export const GROUPABLE = new Set(['feature', 'error']); // tokens and targets keep their own rows

/** `graph` with each group ({id, members}) merged into one supernode and edges between the same ends summed. */
export function merged(graph, groups) {
  if (!groups.length) return graph;
  const owner = {};
  for (const g of groups) for (const m of g.members) owner[m] = g.id;
  const byId = Object.fromEntries(graph.nodes.map((n) => [n.id, n]));
  const nodes = graph.nodes.filter((n) => !owner[n.id]);
  for (const g of groups) {
    const members = g.members.map((id) => byId[id]);
    const mean = members.reduce((s, m) => s + m.layer, 0) / members.length;
    nodes.push({
      id: g.id,
      kind: 'supernode',
      layer: Math.round(mean),
      position: Math.max(...members.map((m) => m.position)),
      feature: null,
      value: members.reduce((s, m) => s + m.value, 0),
      influence: members.reduce((s, m) => s + m.influence, 0),
      label: `${plural(members.length, 'node')}: ${g.members.join(', ')}`,
      members: g.members,
    });
  }
  const sums = new Map();
  for (const e of graph.edges) {
    const source = owner[e.source] ?? e.source;
    const target = owner[e.target] ?? e.target;
    if (source === target) continue; // inside a supernode
    const k = `${source}>${target}`;
    sums.set(k, { source, target, weight: (sums.get(k)?.weight ?? 0) + e.weight });
  }
  return { ...graph, nodes, edges: [...sums.values()] };
}

const WHERE = (n, tokens) => {
  const token = `position ${n.position} ${showToken(tokens[n.position] ?? '')}`;
  if (n.kind === 'token') return `embedding of ${token}`;
  if (n.kind === 'logit') return `output (target ${n.label ? showToken(n.label) : n.id})`;
  return `layer ${n.layer}, ${token}`;
};

const VALUE = { feature: 'activation', error: 'error norm', logit: 'logit - mean logit', token: 'value', supernode: 'summed value' };

/** One line for the tooltip: what the node is and its scores. */
export function hoverText(n, tokens) {
  return `${n.id} (${n.kind}) \u00b7 ${WHERE(n, tokens)} \u00b7 ${VALUE[n.kind]} ${fmt(n.value)} \u00b7 influence ${fmt(n.influence)}`
    + `${n.label && n.kind !== 'supernode' && n.kind !== 'token' ? ` \u00b7 label: ${n.label}` : ''}`;
}

function strongest(graph, id, side) {
  const other = side === 'in' ? 'source' : 'target';
  const mine = side === 'in' ? 'target' : 'source';
  return graph.edges.filter((e) => e[mine] === id).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, 5)
    .map((e) => `${e[other]} (${signed(e.weight)})`).join(', ') || 'none kept';
}

/** The details of the selected nodes, with grouping and ungrouping. */
export function details(box, graph, ui, redraw) {
  const chosen = graph.nodes.filter((n) => ui.selected.has(n.id));
  box.replaceChildren();
  if (!chosen.length) {
    box.append(h('p.muted', {}, 'Click a node for its details; Shift+click adds nodes to the selection.'));
    return;
  }
  for (const n of chosen.slice(0, 6)) {
    box.append(h('div.node-details', { dataset: { id: n.id } },
      h('h3', {}, `${n.id}: ${n.kind}`),
      h('p.facts', {}, `${WHERE(n, graph.tokens)}; ${VALUE[n.kind]} ${fmt(n.value)}; influence ${fmt(n.influence)}`
        + `${n.kind === 'feature' ? `; label: ${n.label || 'none (the transcoders carry no labels)'}` : ''}`
        + `${n.kind === 'supernode' ? `; grouped ${n.label}` : ''}.`),
      h('p.small', {}, `Strongest inputs: ${strongest(graph, n.id, 'in')}. Strongest outputs: ${strongest(graph, n.id, 'out')}.`),
      n.kind === 'supernode' ? h('button.small', { type: 'button', title: 'Draw the members of this supernode as separate nodes again', onclick: () => { ui.groups = ui.groups.filter((g) => g.id !== n.id); ui.selected = new Set(n.members); redraw(); } }, 'Ungroup') : null));
  }
  if (chosen.length > 6) box.append(h('p.small', {}, `\u2026 and ${chosen.length - 6} more selected.`));
  const feature = chosen.find((n) => n.kind === 'feature');
  if (feature && graph.settings?.transcoders) featureDashboard(box, graph.settings.transcoders, feature);
  const groupable = chosen.filter((n) => GROUPABLE.has(n.kind));
  if (groupable.length >= 2) {
    box.append(h('button.group-nodes', {
      type: 'button',
      title: 'Draw the selected features and error nodes as one node; edges to and from them are summed',
      onclick: () => {
        ui.count += 1;
        const id = `S${ui.count}`;
        ui.groups.push({ id, members: groupable.map((n) => n.id) });
        ui.selected = new Set([id]);
        redraw();
      },
    }, `Group ${groupable.length} selected nodes into a supernode`));
  }
}

/** The dashboard of a feature node (the first one selected): its transcoder feature's top contexts, histogram and
 * pushed tokens, read from the set's precomputed dashboards when it has them, else scanned (a job). */
function featureDashboard(box, set, n) {
  const body = { transcoders: set, layer: n.layer, feature: n.feature, k: 10 };
  const section = h('section.dashboard.graph-dashboard', { dataset: { id: n.id } },
    h('h3', {}, `Feature ${n.feature} of layer ${n.layer}: dashboard`));
  box.append(section);
  const dash = need(section, `the dashboard of ${n.id}`, () => cached('transcoders-dashboard', body),
    () => job('transcoders-dashboard', body, (j) => {
      const line = section.querySelector('.loading');
      if (line) line.textContent = `Scanning the corpus for ${n.id}: ${progressText(j)}`;
    }));
  if (!dash) return;
  section.append(h('p.facts.dashboard-label', {}, dash.label ? `Label: ${dash.label.label} (${dash.label.source})`
    : 'No label yet: `glasslab transcoders precompute SET` labels every feature of a set.'), dashboardFacts(dash));
  dashboardView(section, dash, n.feature, { contexts: 5 });
}

/** The feature nodes behind the selection (a supernode stands for its feature members), with activations. */
function selectedFeatures(graph, ui) {
  const byId = Object.fromEntries(graph.nodes.map((n) => [n.id, n]));
  const ids = [...ui.selected].flatMap((id) => ui.groups.find((g) => g.id === id)?.members ?? [id]);
  return ids.map((id) => byId[id]).filter((n) => n && n.kind === 'feature');
}

/** Set the selected features to a multiple of their activation and re-run: graph, frozen and real changes. */
export function intervention(box, graph, body, ui) {
  box.replaceChildren(h('h3', {}, RESULTS.graph_intervention.title), h('p.see', {}, RESULTS.graph_intervention.see));
  const features = selectedFeatures(graph, ui);
  const multiple = h('input#graph-multiple', { type: 'number', step: '0.5', value: String(ui.multiple) });
  multiple.addEventListener('change', () => { ui.multiple = Number(multiple.value); });
  const status = h('p.loading.intervene-status', { role: 'status', hidden: true });
  const run = h('button#graph-intervene.primary', {
    type: 'button',
    disabled: !features.length,
    title: features.length ? `Set ${plural(features.length, 'feature')} and measure the targets` : 'Select a feature node first',
    onclick: async () => {
      const changes = Object.fromEntries(features.map((n) => [n.id, Number(multiple.value) * n.value]));
      const asked = { ...body, changes };
      run.disabled = true;
      status.hidden = false;
      box.querySelector('.error')?.remove();
      try {
        await job('graph-intervene', asked, (j) => { status.textContent = `Intervening: ${progressText(j)}`; });
        ui.intervened = asked;
        intervention(box, graph, body, ui);
      } catch (err) {
        status.hidden = true;
        run.disabled = false;
        box.append(errorLine(err));
      }
    },
  }, 'Set and re-run');
  box.append(h('div.controls.no-report', {},
    field('New activation = multiple \u00d7 its own', multiple, CONTROLS.graphMultiple), run,
    h('span.small', {}, features.length ? `on ${features.map((n) => n.id).join(', ')}` : 'select one or more feature nodes (or a supernode)')), status);
  const done = ui.intervened && cached('graph-intervene', ui.intervened);
  if (done) interventionTable(box, done, graph);
  box.append(h('details.read', {}, h('summary', {}, 'How to read it'), h('p', {}, RESULTS.graph_intervention.read)),
    h('p.caveat', {}, h('strong', {}, 'What it does not prove. '), RESULTS.graph_intervention.caveat));
}

function interventionTable(box, r, graph) {
  const changes = Object.entries(r.changes).map(([id, v]) => `${id} = ${fmt(v)}`).join(', ');
  box.append(h('table.compare.graph-intervention', {},
    h('caption', {}, `Change of each target (logit less the mean logit) when ${changes}`),
    h('thead', {}, h('tr', {}, h('th', {}, 'target'), h('th', {}, 'graph predicts'), h('th', {}, 'frozen attention'), h('th', {}, 'real model'))),
    h('tbody', {}, ...r.targets.map((t, i) => h('tr', {}, h('td', {}, t.label ? showToken(t.label) : `#${graph.targets[i]?.token}`),
      h('td', {}, signed(t.graph)), h('td', {}, signed(t.frozen)), h('td', {}, signed(t.unfrozen)))))));
}
