// The HTTP API client: JSON POSTs to /api/<operation>, background jobs with progress, and a result cache
// so that anything already fetched (for this model and prompt) is rendered again without a request.

import { plain } from './errors.js';

const cache = new Map(); // key -> result JSON (or a pending promise)
const running = new Map(); // key -> {promise, listeners, last}: a job asked for again joins the one running
export const POLL_MS = 500; // one poll of a running job per interval
export const network = { requests: 0, inflight: 0, log: [] }; // for the benchmark and the busy indicator

export class ApiError extends Error {}

function key(name, body) {
  return `${name} ${JSON.stringify(body)}`;
}

async function readError(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const data = await response.json();
    const d = data.detail ?? data.error ?? data.message;
    if (typeof d === 'string') detail = d;
    else if (Array.isArray(d)) detail = d.map((e) => `${(e.loc || []).slice(1).join('.')}: ${e.msg}`).join('; ');
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(plain(detail));
}

export async function request(method, path, body, { signal } = {}) {
  network.requests += 1;
  network.inflight += 1;
  network.log.push({ method, path, t: performance.now() });
  document.body.classList.add('busy');
  try {
    const response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (!response.ok) throw await readError(response);
    return response.status === 204 ? null : await response.json();
  } catch (err) {
    if (err.name === 'AbortError' || err instanceof ApiError) throw err;
    throw new ApiError(`the server did not answer (${err.message}); is glasslab serve still running?`);
  } finally {
    network.inflight -= 1;
    if (!network.inflight) document.body.classList.remove('busy');
  }
}

/** A cached POST /api/<name>: the same body never reaches the server twice (until the model changes). */
export function call(name, body) {
  const k = key(name, body);
  if (cache.has(k)) {
    const hit = cache.get(k);
    return hit instanceof Promise ? hit : Promise.resolve(hit);
  }
  const pending = request('POST', `/api/${name}`, body).then((result) => {
    cache.set(k, result);
    return result;
  }, (err) => {
    cache.delete(k);
    throw err;
  });
  cache.set(k, pending);
  return pending;
}

/** The result if it is already here (synchronous; null when missing or still pending). */
export function cached(name, body) {
  const hit = cache.get(key(name, body));
  return hit && !(hit instanceof Promise) ? hit : null;
}

export function remember(name, body, result) {
  cache.set(key(name, body), result);
}

export function forget() {
  cache.clear();
  running.clear();
}

/** Every cached result (for saving an experiment): [{name, body, result}]. */
export function cachedEntries() {
  const out = [];
  for (const [k, v] of cache) {
    if (v instanceof Promise) continue;
    const space = k.indexOf(' ');
    out.push({ name: k.slice(0, space), body: JSON.parse(k.slice(space + 1)), result: v });
  }
  return out;
}

/**
 * Poll a job every POLL_MS until it ends, telling `onProgress` each state; resolves with its last state.
 * `signal` aborting cancels the job on the server.
 */
export async function pollJob(first, onProgress = () => {}, { signal } = {}) {
  let state = first;
  const abort = () => request('POST', `/api/jobs/${first.id}/cancel`).catch(() => {});
  signal?.addEventListener('abort', abort);
  try {
    onProgress(state);
    while (state.status === 'queued' || state.status === 'running') {
      await new Promise((r) => setTimeout(r, POLL_MS));
      state = await request('GET', `/api/jobs/${first.id}`);
      onProgress(state);
    }
  } finally {
    signal?.removeEventListener('abort', abort);
  }
  return state;
}

/**
 * Run a long operation as a job, reporting progress; resolves with its result (cached like `call`). Asking
 * for the same job while it runs (a panel drawn again meanwhile) joins it: one job and one poll, and every
 * caller's `onProgress` hears each state.
 */
export function job(name, body, onProgress = () => {}, { signal } = {}) {
  const k = key(name, body);
  if (cache.has(k) && !(cache.get(k) instanceof Promise)) return Promise.resolve(cache.get(k));
  const joined = running.get(k);
  if (joined) {
    joined.listeners.add(onProgress);
    if (joined.last) onProgress(joined.last);
    return joined.promise;
  }
  const entry = { listeners: new Set([onProgress]), last: null };
  const tell = (state) => {
    entry.last = state;
    for (const fn of entry.listeners) fn(state);
  };
  entry.promise = (async () => {
    const first = await request('POST', '/api/jobs', { kind: name, params: body });
    const state = await pollJob(first, tell, { signal });
    if (state.status !== 'done') throw new ApiError(plain(state.error || `the job was ${state.status}`));
    cache.set(k, state.result);
    return state.result;
  })().finally(() => running.delete(k));
  running.set(k, entry);
  return entry.promise;
}
