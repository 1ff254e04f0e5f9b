// The guided tutorial: two demo prompts walked through a few panels. Its place is kept in localStorage, so
// leaving it (or closing the tab) and pressing Tutorial again resumes where it stopped.

import { TUTORIAL } from './explain.js';
import { state, update } from './store.js';

const KEY = 'glasslab.tutorial';
const $ = (id) => document.getElementById(id);
let analyseFn = null;

function saved() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

function store(step, active) {
  localStorage.setItem(KEY, JSON.stringify({ step, active }));
}

/** The prompt a step works on: its own, or the one of the demo it belongs to. */
function promptOf(i) {
  for (let k = i; k >= 0; k--) if (TUTORIAL[k].prompt && TUTORIAL[k].demo === TUTORIAL[i].demo) return TUTORIAL[k].prompt;
  return null;
}

async function show(i) {
  const step = TUTORIAL[i];
  store(i, true);
  $('tutorial').hidden = false;
  $('tut-title').textContent = step.title;
  $('tut-count').textContent = `step ${i + 1} of ${TUTORIAL.length}`;
  $('tut-text').textContent = step.text;
  $('tut-prev').disabled = i === 0;
  $('tut-next').textContent = i === TUTORIAL.length - 1 ? 'Finish' : 'Next';
  const prompt = promptOf(i);
  if (prompt && state.prompt !== prompt) {
    $('prompt').value = prompt;
    await analyseFn(prompt);
  }
  update({ panel: step.panel });
}

export function startTutorial() {
  const s = saved();
  show(s && s.step < TUTORIAL.length ? s.step : 0);
}

export function resumeTutorial() {
  const s = saved();
  if (s?.active) show(Math.min(s.step, TUTORIAL.length - 1));
}

export function initTutorial(analyse) {
  analyseFn = analyse;
  $('tut-next').addEventListener('click', () => {
    const s = saved()?.step ?? 0;
    if (s + 1 >= TUTORIAL.length) {
      store(0, false);
      $('tutorial').hidden = true;
    } else show(s + 1);
  });
  $('tut-prev').addEventListener('click', () => show(Math.max(0, (saved()?.step ?? 0) - 1)));
  $('tut-close').addEventListener('click', () => {
    store(saved()?.step ?? 0, false);
    $('tutorial').hidden = true;
    $('tutorial-btn').textContent = 'Resume tutorial';
  });
  for (const id of ['tut-prev', 'tut-next', 'tut-close']) $(id).title = { 'tut-prev': 'The previous step', 'tut-next': 'The next step', 'tut-close': 'Close the tutorial; press "Resume tutorial" to continue from this step' }[id];
  const s = saved();
  if (s && !s.active && s.step > 0) $('tutorial-btn').textContent = 'Resume tutorial';
}
