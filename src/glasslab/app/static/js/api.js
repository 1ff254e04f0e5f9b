// The HTTP API client: JSON POSTs to /api/<operation>, background jobs with progress, and a result cache
// so that anything already fetched (for this model and prompt) is rendered again without a request.

const cache = new Map(); // key -> result JSON (or a pending promise)
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
  return new ApiError(detail);
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

/** Run a long operation as a job, reporting progress; resolves with its result. */
export async function job(name, body, onProgress = () => {}, { signal } = {}) {
  const k = key(name, body);
  if (cache.has(k) && !(cache.get(k) instanceof Promise)) return cache.get(k);
  let state = await request('POST', '/api/jobs', { kind: name, params: body });
  const id = state.id;
  const abort = () => request('POST', `/api/jobs/${id}/cancel`).catch(() => {});
  signal?.addEventListener('abort', abort);
  try {
    while (state.status === 'queued' || state.status === 'running') {
      onProgress(state);
      await new Promise((r) => setTimeout(r, 250));
      state = await request('GET', `/api/jobs/${id}`);
    }
  } finally {
    signal?.removeEventListener('abort', abort);
  }
  if (state.status !== 'done') throw new ApiError(state.error || `the job was ${state.status}`);
  cache.set(k, state.result);
  return state.result;
}
