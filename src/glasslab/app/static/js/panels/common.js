// What every panel shares: its explanation block, a "loading" state that re-renders when data arrives,
// error messages, and small form controls with tooltips.

import { h, plural } from '../dom.js';
import { PANELS } from '../explain.js';
import { render } from '../chart.js';

let rerender = () => {};
export function onDataArrived(fn) {
  rerender = fn;
}

/** Re-render the visible panel (after data it was waiting for arrived). */
export function refresh() {
  rerender();
}

/** The panel's heading and its three notes; returns the element the panel draws into. */
export function frame(root, id) {
  const t = PANELS[id];
  const body = h('div.panel-body');
  root.replaceChildren(
    h('h2', { id: `h-${id}` }, t.title),
    h('p.see', {}, h('strong', {}, 'What you see. '), t.see),
    body,
    h('details.read', { open: render.report ? true : undefined }, h('summary', { title: 'Show or hide the explanation' }, 'How to read it'), h('p', {}, t.read)),
    h('p.caveat', {}, h('strong', {}, 'What it does not prove. '), t.caveat),
  );
  return body;
}

/**
 * Show the data when it is here; otherwise show a loading line, fetch it, and re-render the panel
 * (if the user is still on it). `get()` returns the data synchronously or null; `fetch()` a promise.
 */
export function need(el, what, get, fetchIt) {
  const have = get();
  if (have) return have;
  if (render.report) {
    el.append(h('p.muted', {}, `Not computed in this analysis: ${what}.`));
    return null;
  }
  el.append(h('p.loading', { role: 'status' }, `Computing ${what}\u2026`));
  fetchIt().then(() => rerender(), (err) => {
    el.querySelector('.loading')?.remove();
    el.append(errorLine(err));
  });
  return null;
}

export function errorLine(err) {
  return h('p.error', { role: 'alert' }, String(err.message || err));
}

export function field(label, control, tip) {
  if (tip) control.title = tip;
  return h('label.field', { title: tip }, h('span', {}, label), control);
}

export function button(text, tip, onclick, cls = '') {
  return h(`button${cls ? `.${cls}` : ''}`, { type: 'button', title: tip, onclick }, text);
}

/** A run button that disables itself while its promise is pending and shows errors under the form. */
export function action(text, tip, run, out) {
  const b = button(text, tip, async () => {
    b.disabled = true;
    out.querySelector('.error')?.remove();
    const status = h('p.loading', { role: 'status' }, `${text}\u2026`);
    out.prepend(status);
    try {
      await run((msg) => { status.textContent = msg; });
      rerender();
    } catch (err) {
      status.remove();
      out.prepend(errorLine(err));
    } finally {
      b.disabled = false;
    }
  }, 'primary');
  return b;
}

export function progressText(job) {
  const frac = job.total ? ` ${Math.round((100 * job.done) / job.total)}%` : job.done ? ` (${plural(job.done, 'step')})` : '';
  return `${job.stage || job.status}${frac}`;
}
