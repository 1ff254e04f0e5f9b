// After the first analysis, fetch in the background what other tokens and heads will need, one request at a
// time and only while nothing else is waiting, so that clicking around later needs no request at all.
// Every item decodes from the server's cached forward pass of the prompt (no new model run).
// Attention: every head's pattern in one request, so clicking any head is drawn from memory.

import { network } from './api.js';
import { Q, fetchQ, get, lensWindow } from './data.js';
import { learnPatterns, patternOf } from './panels/attention.js';
import { state } from './store.js';

export const prefetchTimes = []; // seconds per finished prefetch (the benchmark reports them)

const PREFETCH_MAX_TOKENS = 64; // longer prompts fetch per token on demand instead
let generation = 0;

export function stopPrefetch() {
  generation += 1;
}

export async function prefetch() {
  const mine = ++generation;
  const t0 = performance.now();
  const prompt = state.prompt;
  const n = state.tokens.length;
  document.body.dataset.prefetch = 'running';
  const queue = [];
  const ov = get(Q.overview())?.attention;
  if (n <= PREFETCH_MAX_TOKENS) {
    if (ov && !patternOf(ov.n_layers - 1, ov.n_heads - 1)) queue.push(Q.attentionAll(n - 1));
    for (let p = n - 2; p >= 0; p--) queue.push(Q.predict(p), Q.dla(p));
  }
  // The logit lens decodes the whole vocabulary at every layer: the costliest, so last, nearest the end first.
  for (const p of lensWindow(n - 1).reverse()) if (p !== n - 1) queue.push(Q.lensAt(p));
  for (const q of queue) {
    if (mine !== generation || state.prompt !== prompt) return;
    while (network.inflight > 0) await new Promise((r) => setTimeout(r, 30)); // the user's requests first
    if (mine !== generation) return;
    if (get(q)) continue;
    try {
      const result = await fetchQ(q);
      if (q[0] === 'attention') learnPatterns(result);
    } catch {
      // prefetching is best effort: the panel asks again (and shows the error) when it is opened
    }
  }
  if (mine === generation) {
    prefetchTimes.push((performance.now() - t0) / 1000);
    document.body.dataset.prefetch = 'done';
  }
}
