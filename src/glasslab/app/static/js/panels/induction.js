// The induction demo of the Ablation panel: the top induction heads (Head roles' ranking) ablated together,
// beside a control of as many random heads (seeded), because one induction head alone often changes nothing:
// backup heads copy the same pattern and take over, and any three heads knocked out may move the metric.

import { fmt, h, headName, pct } from '../dom.js';
import { cached, call, job } from '../api.js';
import { rolesBody } from './roles.js';
import { action } from './common.js';
import { position, setting, state } from '../store.js';

export const DEMO_K = 3; // induction heads ablated together (and random heads in the control)
export const DEMO_SEED = 1; // the control's random heads: the same every time, for every reader

/** A small seeded generator (mulberry32): the control's heads are reproducible across browsers. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `k` distinct heads drawn with `seed` among every head except `skip` ([[layer, head], ...], sorted). */
export function randomHeads(nL, nH, skip, k = DEMO_K, seed = DEMO_SEED) {
  const taken = new Set(skip.map(([l, hh]) => `${l}.${hh}`));
  const pool = [];
  for (let l = 0; l < nL; l++) for (let hh = 0; hh < nH; hh++) if (!taken.has(`${l}.${hh}`)) pool.push([l, hh]);
  const next = rng(seed);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** The demo's two head sets, once Head roles has scored the model (null before). */
function demoHeads(roles) {
  const top = roles?.random?.induction?.top;
  if (!top?.length) return null;
  const nL = state.model?.n_layers ?? roles.random.induction.scores.length;
  const nH = state.model?.n_heads ?? roles.random.induction.scores[0].length;
  const induction = top.slice(0, DEMO_K).map((t) => [t.layer, t.head]);
  return { induction, random: randomHeads(nL, nH, induction, induction.length) };
}

const body = (heads) => ({
  prompt: state.prompt, heads, position: position(), how: setting('ablation', 'how', 'zero'), metric: setting('ablation', 'metric', 'prob'),
});
const names = (heads) => heads.map(([l, hh]) => headName(l, hh)).join(', ');

/** The demo's button, and its result line once both ablations are here. */
export function inductionDemo(el) {
  const out = h('div.results.induction-demo');
  el.append(h('div.controls.no-report', {}, action(`Top ${DEMO_K} induction heads vs ${DEMO_K} random heads`,
    `Ablate the ${DEMO_K} heads Head roles ranks highest for induction together, then ${DEMO_K} random heads (seed ${DEMO_SEED}) as a control`,
    async (say) => {
      const roles = await job('head-roles', rolesBody(), () => say('Scoring heads on repeated random tokens\u2026'));
      const heads = demoHeads(roles);
      if (!heads) throw new Error('Head roles found no induction scores for this model; open Head roles to check.');
      await Promise.all([call('ablate', body(heads.induction)), call('ablate', body(heads.random))]);
    }, out)));
  el.append(out);
  const heads = demoHeads(cached('head-roles', rolesBody()));
  const hit = heads && cached('ablate', body(heads.induction));
  const ctl = heads && cached('ablate', body(heads.random));
  if (!hit || !ctl) return;
  const v = (x) => (hit.metric_kind === 'prob' ? pct(x) : fmt(x));
  out.append(h('p.facts.induction-result', {}, `${hit.metric}: clean `, h('strong.demo-clean', {}, v(hit.clean)),
    `, top ${heads.induction.length} induction heads (${names(heads.induction)}) ablated `, h('strong.demo-induction', {}, v(hit.ablated)),
    `, ${heads.random.length} random heads (${names(heads.random)}; seed ${DEMO_SEED}) ablated `, h('strong.demo-random', {}, v(ctl.ablated)), '.'));
  out.append(h('p.muted', {}, 'One induction head alone may change nothing: backup heads copy the same pattern and take over, '
    + 'so only knocking out several together shows that the model needs them. The random heads show how much any '
    + `${heads.random.length} heads move the metric.`));
}
