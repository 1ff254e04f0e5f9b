// The circuit graph (SVG): strongest heads and MLPs for the clean/corrupted pair, and measured paths.

import { componentName, fmt, h, headName, plural } from '../dom.js';
import { cached, job } from '../api.js';
import { chart } from '../chart.js';
import { update } from '../store.js';
import { action, frame, progressText } from './common.js';
import { pairBody, pairControls } from './patching.js';

function body() {
  return { ...pairBody(), top: 8 };
}

export function render(root) {
  const el = frame(root, 'circuit');
  const out = h('div.results');
  pairControls(el, out, 'circuit', [['Find the circuit', 'Patch every head and MLP, keep the strongest, then measure paths between them (can take a while)', async (say) => {
    const b = body();
    if (!b.corrupted) throw new Error('Type a corrupted prompt first: the same text with one detail changed.');
    await job('circuit', b, (j) => say(`Finding the circuit: ${progressText(j)}`));
  }]]);
  el.append(out);
  const c = cached('circuit', body());
  if (!c) {
    out.append(h('p.muted', {}, 'No circuit for this pair yet: it uses the same clean and corrupted prompts as activation patching.'));
    return;
  }
  out.append(h('p.facts', {}, `${c.metric}: clean ${fmt(c.clean_value)}, corrupted ${fmt(c.corrupted_value)}; kept ${c.thresholds.kept} of ${plural(c.thresholds.candidates, 'component')}.`));
  const label = (nd) => (nd.kind === 'head' ? headName(nd.layer, nd.head) : componentName(nd.id));
  chart(out, {
    kind: 'graph',
    title: 'Circuit: components by layer (left to right) and the paths between them',
    nodes: c.nodes.map((nd) => ({
      id: nd.id,
      label: label(nd),
      depth: nd.depth,
      value: nd.effect,
      hover: nd.effect === null ? label(nd) : `${label(nd)}: patching it alone moves ${fmt(nd.effect, 3)} of the difference`,
    })),
    edges: c.edges.map((e) => ({
      source: e.source,
      target: e.target,
      value: e.effect,
      measured: e.measured,
      hover: `${componentName(e.source)} \u2192 ${componentName(e.target)}: ${e.measured ? `${fmt(e.effect, 3)} of the difference${e.shared_kv ? ' (shared k/v)' : ''}` : 'possible by layer order, not measured'}`,
    })),
  }, {
    json: c,
    onNode: (id) => {
      const nd = c.nodes.find((n) => n.id === id);
      if (nd?.kind === 'head') update({ layer: nd.layer, head: nd.head });
    },
  });
}
