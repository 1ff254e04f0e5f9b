// Beside the prompt: its length in tokens while it is typed (POST /api/tokens, which never waits behind model
// work, asked once typing pauses) and, while an analysis runs, a spinner with the time so far, so a slow
// machine never looks stuck while the previous results (dimmed by the CSS) are still on screen.

import { call } from './api.js';
import { plural } from './dom.js';

const DEBOUNCE_MS = 300; // ask once typing pauses this long
let counter;
let asked = 0; // the latest question: an older answer arriving late is dropped
let timer = null;

/** Count the tokens of `textarea` into `el` whenever its text changes (debounced). */
export function mountCounter(textarea, el) {
  counter = el;
  textarea.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => countTokens(textarea.value), DEBOUNCE_MS);
  });
}

function show(text, bad = false) {
  counter.textContent = text;
  counter.classList.toggle('too-long', bad);
}

/** Show a known count (an analysis just tokenized the same text): no request. */
export function showCount(n) {
  asked += 1;
  clearTimeout(timer);
  show(n ? plural(n, 'token') : '');
}

async function countTokens(text) {
  const mine = ++asked;
  if (!text.trim()) {
    show('');
    return;
  }
  try {
    const { n_tokens: n } = await call('tokens', { prompt: text });
    if (mine === asked) show(plural(n, 'token'));
  } catch (err) {
    if (mine === asked) show(err.message, true); // e.g. too long: the page's plain words for the limit
  }
}

let ticker = null;

/** Show "Analysing… 3.2 s" with a spinner until `stopAnalysing`; the body's data-analysis dims old results. */
export function startAnalysing(status) {
  const t0 = performance.now();
  const seconds = status.querySelector('.elapsed');
  const tick = () => { seconds.textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s`; };
  tick();
  status.hidden = false;
  clearInterval(ticker);
  ticker = setInterval(tick, 100);
}

export function stopAnalysing(status) {
  clearInterval(ticker);
  ticker = null;
  status.hidden = true;
}
