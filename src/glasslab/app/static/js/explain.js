// Every text the workbench shows to explain itself: per panel a one-line "what you see", a longer "how to
// read it" and a "what it does not prove" caveat; the tooltips of controls that are not obvious; and the
// guided tutorial's steps. They are written once, in Python (glasslab.views.explanations), and served by
// GET /api/explanations, so notebooks, reports, the CLI and the workbench say the same thing.
// loadExplanations() fills these objects in place before the first render (main.js awaits it first).

export const PANELS = {};
export const RESULTS = {}; // results' notes by kind (a panel showing a result reads them here)
export const CONTROLS = {};
export const TUTORIAL = [];

/** Fetch the texts once and fill PANELS, CONTROLS and TUTORIAL (the objects every module imported). */
export async function loadExplanations() {
  const response = await fetch('/api/explanations');
  if (!response.ok) throw new Error(`could not load the explanations (HTTP ${response.status})`);
  const texts = await response.json();
  Object.assign(PANELS, texts.panels);
  Object.assign(RESULTS, texts.results);
  Object.assign(CONTROLS, texts.controls);
  TUTORIAL.splice(0, TUTORIAL.length, ...texts.tutorial);
}
