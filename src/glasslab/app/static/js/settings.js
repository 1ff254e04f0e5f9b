// User settings kept in localStorage: the sequential colour scale (viridis or cividis).

const KEY = 'glasslab.settings';

export const settings = { sequential: 'viridis' };

try {
  Object.assign(settings, JSON.parse(localStorage.getItem(KEY) || '{}'));
} catch {
  // a damaged entry falls back to the defaults
}

export function saveSettings(patch) {
  Object.assign(settings, patch);
  localStorage.setItem(KEY, JSON.stringify(settings));
}
