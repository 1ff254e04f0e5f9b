// Where each panel's numbers come from: one request body per question, so the same question is asked once
// and every later look (another panel, back to a token) is served from the client's cache.

import { cached, call } from './api.js';
import { position, state } from './store.js';

export const Q = {
  overview: (prompt = state.prompt) => ['overview', { prompt, k: 10, position: -1 }],
  predict: (p) => ['predict', { prompt: state.prompt, k: 10, position: p }],
  attention: (p, layer, head) => ['attention', layer === null || layer === undefined
    ? { prompt: state.prompt, query_position: p, top_k: 5 }
    : { prompt: state.prompt, layer, head, query_position: p, top_k: 5 }],
  // One position per call: its column of the layers x positions map and its candidates (decoding the whole
  // vocabulary at every layer is the costly part, so columns are fetched one by one, nearest first).
  // Every head's pattern in one answer (the server sends them for prompts up to 64 tokens).
  attentionAll: (p) => ['attention', { prompt: state.prompt, query_position: p, top_k: 5, all_patterns: true }],
  lensAt: (p) => ['logit-lens', { prompt: state.prompt, k: 5, positions: [p], candidate_position: p }],
  dla: (p) => ['dla', { prompt: state.prompt, position: p, top_neurons: 0 }], // neurons have their own panel
  neurons: (p, target) => ['neurons', { prompt: state.prompt, position: p, top: 10, target }],
};

export const get = (q) => cached(...q);
export const fetchQ = (q) => call(...q);

export function isLast(p) {
  return p === state.tokens.length - 1;
}

/** The prediction at position p: the overview's when p is the last token (no second request). */
export function prediction(p = position()) {
  if (isLast(p)) return get(Q.overview())?.prediction ?? null;
  return get(Q.predict(p));
}

export function fetchPrediction(p = position()) {
  return isLast(p) ? fetchQ(Q.overview()) : fetchQ(Q.predict(p));
}

/** Every head's summaries and reads at query p, plus the pattern of (layer, head) when given. */
export function attentionAt(p, layer = null, head = null) {
  const ov = get(Q.overview())?.attention;
  if (ov && isLast(p) && (layer === null || (ov.layer === layer && ov.head === head))) return ov;
  return get(Q.attention(p, layer, head));
}

export const LENS_WINDOW = 24; // positions the lens heatmap shows around the selected token

/** The window of positions the lens heatmap shows around the selected position. */
export function lensWindow(p = position()) {
  const n = state.tokens.length;
  const start = Math.max(0, Math.min(p - Math.floor(LENS_WINDOW / 2), n - LENS_WINDOW));
  return Array.from({ length: Math.min(n, LENS_WINDOW) }, (_, i) => start + i);
}

/** The logit lens at position p (its column and its candidates): the overview's for the last token. */
export function lensAt(p) {
  if (isLast(p)) return get(Q.overview())?.logit_lens ?? null;
  return get(Q.lensAt(p));
}

export function fetchLens(p) {
  return isLast(p) ? fetchQ(Q.overview()) : fetchQ(Q.lensAt(p));
}

/** Direct logit attribution for the top prediction at p (the overview's when p is the last token). */
export function dlaAt(p = position()) {
  if (isLast(p)) return get(Q.overview())?.attribution ?? null;
  return get(Q.dla(p));
}

export function fetchDla(p = position()) {
  return isLast(p) ? fetchQ(Q.overview()) : fetchQ(Q.dla(p));
}
