// The tick box a corpus job's panel shows to run it on the Ray cluster the server was started with
// (`glasslab serve --cluster`; GET /api/model `cluster`), and only when the server has one: a request can ask
// for the operator's cluster (`on_cluster`), never name another. The panel keeps the choice in its own state
// (`choice.onCluster`), so it survives the panel's re-renders.

import { h, plural } from '../dom.js';
import { state } from '../store.js';

/** Append the tick box (id `id`) and its note to `box`, unless the server has no cluster. */
export function clusterChoice(box, choice, id, note) {
  const cluster = state.model?.cluster;
  if (!cluster) return;
  const workers = cluster.workers ? plural(cluster.workers, 'worker') : 'one worker per CPU';
  const tick = h(`input#${id}`, { type: 'checkbox', checked: Boolean(choice.onCluster) });
  tick.addEventListener('change', () => { choice.onCluster = tick.checked; });
  box.append(h('div.controls.cluster-toggle', {}, h('label.check', {}, tick, ` Run on the Ray cluster (${workers})`)),
    h('p.muted.cluster-note', {}, note));
}

/** The job's parameters for the choice: `{ on_cluster: true }` when it is ticked and the server has a cluster. */
export function clusterParams(choice) {
  return state.model?.cluster && choice.onCluster ? { on_cluster: true } : {};
}
