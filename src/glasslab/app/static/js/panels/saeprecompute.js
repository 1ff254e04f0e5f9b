// Precomputing an SAE trained into the store from the SAE panel: one job (sae-precompute) scans the corpus
// once for every feature's dashboard and labels them, scored on held-out text; until then its dashboards are
// scanned live; on a server started with a Ray cluster a tick box sends the scan there. And the label's
// detection score, shown under a dashboard.

import { fmt, h, pct } from '../dom.js';
import { forget, job } from '../api.js';
import { CONTROLS } from '../explain.js';
import { clusterChoice, clusterParams } from './clusterchoice.js';
import { action, progressText } from './common.js';

const precompute = { onCluster: false }; // the box ticked to scan on the server's Ray cluster (clusterchoice.js)

/** The label's detection score: how well its words predict where the feature fires on held-out text. */
export function detectionLine(box, label) {
  const d = label?.detection;
  if (!d) return;
  box.append(h('p.small.detection', { title: 'A token is predicted to fire the feature when its word is one the label names (or a member of the class it names); measured on text the label was not built from' },
    `Label score: F1 ${fmt(d.f1, 2)} on ${d.tokens.toLocaleString()} held-out tokens of ${d.corpus} `
    + `(precision ${pct(d.precision)}: of the tokens the label names, the share where the feature fires; recall ${pct(d.recall)}: of the tokens where it fires, the share the label names).`));
}

/** An SAE trained into the store has no precomputed dashboards: one job scans the corpus once for all of them. */
export function precomputeBox(el, name, entry) {
  if (!name.startsWith('store:') || entry.precomputed) return;
  const out = h('div.results');
  const box = h('div.controls.no-report.precompute', {}, h('span.small', {}, 'Its dashboards are scanned live (seconds each) and its features have no labels yet. '),
    action('Precompute every dashboard and label', CONTROLS.saePrecompute, async (say) => {
      await job('sae-precompute', { sae: name, ...clusterParams(precompute) }, (j) => say(`Precomputing: ${progressText(j)}`));
      entry.precomputed = true;
      forget(); // dashboards and features scanned before now read the new labels and atlas
    }, out));
  clusterChoice(box, precompute, 'precompute-on-cluster', 'Ray workers then load the model and scan the corpus; '
    + 'this machine scores the labels on held-out text.');
  el.append(box, out);
}
