// The app's state: what is selected (prompt, token position, head, panel, heads to ablate...) and the
// listeners that re-render when it changes. Results live in api.js's cache; state only says what to show.

export const state = {
  model: null, // /api/model answer: name, n_layers, n_heads, ...
  prompt: '',
  tokens: [], // [{position, token, token_id}]
  position: null, // absolute position every panel looks at
  hover: null, // token position under the pointer (attention: what it reads)
  panel: 'predictions',
  layer: null, // selected head (attention, ablation)
  head: null,
  agg: 'max', // attention grid summary: max | mean | entropy
  ablate: [], // ["L.H", ...] heads marked for ablation
  settings: {}, // per-panel form values (patching's corrupted prompt, steering pairs...)
  error: '',
};

const listeners = new Set();

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Merge `patch` into the state and tell every listener which keys changed. */
export function update(patch) {
  const changed = Object.keys(patch).filter((k) => state[k] !== patch[k]);
  if (!changed.length) return;
  Object.assign(state, patch);
  for (const fn of listeners) fn(changed);
}

export function setting(panel, name, fallback) {
  return state.settings[panel]?.[name] ?? fallback;
}

export function setSetting(panel, name, value) {
  state.settings = { ...state.settings, [panel]: { ...(state.settings[panel] || {}), [name]: value } };
}

/** The selected position, or the last token when nothing is selected. */
export function position() {
  return state.position ?? Math.max(0, state.tokens.length - 1);
}
