// The token strip: click a token (or use the arrow keys) to choose the position every panel looks at; hover
// a token to colour the strip by what it reads in the selected attention head. Long prompts show a window
// of tokens around the selection so the page never holds more than WINDOW token elements.

import { h, headName, showToken } from './dom.js';
import { CONTROLS } from './explain.js';
import { colour } from './colors.js';
import { settings } from './settings.js';
import { position, state, update } from './store.js';
import { patternOf, selectedHead } from './panels/attention.js';

const WINDOW = 160;
let strip;
let first = 0; // first position in the window

export function mountStrip(el) {
  strip = el;
  strip.setAttribute('role', 'listbox');
  strip.setAttribute('aria-label', 'Tokens of the prompt');
  strip.title = CONTROLS.tokens;
  strip.tabIndex = 0;
  strip.addEventListener('keydown', (ev) => {
    const n = state.tokens.length;
    if (!n) return;
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -1, ArrowDown: 1, Home: -n, End: n, PageUp: -16, PageDown: 16 };
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    update({ position: Math.max(0, Math.min(n - 1, position() + moves[ev.key])) });
  });
  strip.addEventListener('click', (ev) => {
    const t = ev.target.closest('[data-pos]');
    if (t) update({ position: Number(t.dataset.pos) });
    const more = ev.target.closest('[data-jump]');
    if (more) update({ position: Number(more.dataset.jump) });
  });
  strip.addEventListener('mouseover', (ev) => {
    const t = ev.target.closest('[data-pos]');
    if (t) paintReads(Number(t.dataset.pos));
  });
  strip.addEventListener('mouseleave', () => paintReads(null));
}

/** Rebuild the strip (new prompt, or the selection left the window); otherwise only move the highlight. */
export function drawStrip() {
  const n = state.tokens.length;
  const p = position();
  const inWindow = p >= first && p < first + WINDOW;
  if (strip.dataset.prompt === state.prompt && strip.dataset.n === String(n) && (inWindow || n <= WINDOW)) {
    select(p);
    return;
  }
  first = n <= WINDOW ? 0 : Math.max(0, Math.min(p - WINDOW / 2, n - WINDOW));
  const last = Math.min(n, first + WINDOW);
  const items = [];
  if (first > 0) items.push(h('button.more', { type: 'button', dataset: { jump: Math.max(0, first - 1) }, title: 'Show earlier tokens' }, `\u2190 ${first} earlier`));
  for (let i = first; i < last; i++) {
    const t = state.tokens[i];
    items.push(h('span.tok', { role: 'option', 'aria-selected': 'false', dataset: { pos: i }, title: `position ${i}: click to look at this token` }, showToken(t.token)));
  }
  if (last < n) items.push(h('button.more', { type: 'button', dataset: { jump: last }, title: 'Show later tokens' }, `${n - last} later \u2192`));
  strip.replaceChildren(...items);
  strip.dataset.prompt = state.prompt;
  strip.dataset.n = String(n);
  select(p);
}

function select(p) {
  const old = strip.querySelector('.tok.selected');
  if (old) {
    old.classList.remove('selected');
    old.setAttribute('aria-selected', 'false');
  }
  const el = strip.querySelector(`[data-pos="${p}"]`);
  if (el) {
    el.classList.add('selected');
    el.setAttribute('aria-selected', 'true');
    el.id = el.id || `tok-${p}`;
    strip.setAttribute('aria-activedescendant', el.id);
    keepInStrip(el);
  }
}

/** Scroll the strip itself (not the page) so the selected token is visible: a click further down the page (a
 *  row of an attention pattern) must not move the page up to the strip. */
function keepInStrip(el) {
  const box = strip.getBoundingClientRect();
  const r = el.getBoundingClientRect();
  if (r.top < box.top) strip.scrollTop -= box.top - r.top;
  else if (r.bottom > box.bottom) strip.scrollTop += r.bottom - box.bottom;
}

/** Colour each token by how much token `q` reads it in the selected head (null: clear). */
function paintReads(q) {
  const toks = strip.querySelectorAll('.tok');
  const [layer, head] = selectedHead();
  const pattern = q === null || state.panel !== 'attention' ? null : patternOf(layer, head);
  for (const el of toks) {
    const k = Number(el.dataset.pos);
    if (!pattern || k > q) {
      el.style.background = '';
      el.style.color = '';
      el.classList.remove('reading');
      continue;
    }
    const w = pattern[q][k];
    el.style.background = colour(settings.sequential, w, 0, 1, false);
    el.style.color = w > 0.55 ? '#111' : '#fff';
    el.classList.toggle('reading', k === q);
  }
  const note = document.getElementById('strip-note');
  if (note) note.textContent = pattern ? `Colours: what token ${q} reads in ${headName(layer, head)} (bright = more attention).` : '';
}
