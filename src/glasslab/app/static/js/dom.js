// Small DOM helpers shared by every module: element building, escaping, a shared tooltip, downloads.

/** h('div#id.cls', {attrs}, ...children): a tiny element builder (strings become text nodes, never HTML). */
export function h(tag, attrs = {}, ...children) {
  const [head, ...classes] = tag.split('.');
  const [name, id] = head.split('#');
  const el = document.createElement(name || 'div');
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** How a token looks on screen: spaces and newlines made visible. */
export function showToken(t) {
  return String(t).replace(/ /g, '\u00a0').replace(/\n/g, '\u21b5').replace(/\t/g, '\u21e5') || '\u2205';
}

export function fmt(x, digits = 3) {
  if (x === null || x === undefined) return '\u2013';
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(a >= 100 ? 1 : digits);
}

export function pct(p) {
  return `${(100 * p).toFixed(p < 0.001 ? 3 : 1)}%`;
}

const MINUS = '\u2212';

/** A change of a probability in percentage points: "\u221287.3 pp", "+0.004 pp" (small changes keep digits). */
export function pp(d) {
  const a = Math.abs(100 * d);
  return `${d < 0 ? MINUS : '+'}${a.toFixed(a !== 0 && a < 0.1 ? 3 : 1)} pp`;
}

/** A signed change of a score (a logit, a logit difference): "+1.234", "\u22120.500". */
export function signed(d) {
  const s = fmt(Math.abs(d));
  return `${d < 0 ? MINUS : '+'}${s}`;
}

/** "1 head", "2 heads" (`many` for irregular plurals). */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** The one way the page names an attention head: "L10H3" (layer 10, head 3). */
export function headName(layer, head) {
  return `L${layer}H${head}`;
}

/** A component as the server names it ("L10.H3", "L3 mlp") in the page's form: heads as headName. */
export function componentName(label) {
  return String(label).replace(/\bL(\d+)\.H(\d+)\b/g, (_, layer, head) => headName(layer, head));
}

let tip;
/** One floating tooltip for charts (native title attributes cover the controls). */
export function showTip(text, x, y) {
  if (!tip) {
    tip = h('div.tip', { role: 'status', 'aria-live': 'polite' });
    document.body.append(tip);
  }
  tip.textContent = text;
  tip.hidden = false;
  const w = tip.offsetWidth;
  tip.style.left = `${Math.min(x + 14, window.innerWidth - w - 8)}px`;
  tip.style.top = `${y + 16}px`;
}

export function hideTip() {
  if (tip) tip.hidden = true;
}

export function download(name, content, type) {
  const blob = content instanceof Blob ? content : new Blob([content], { type });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function slug(s) {
  return String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'chart';
}

/** A number in a heatmap cell: two decimals, tiny values as 0.00, large ones rounded. */
export function short(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '';
  const a = Math.abs(x);
  if (a >= 1000) return x.toExponential(0);
  if (a >= 100) return x.toFixed(0);
  return (a < 0.005 ? 0 : x).toFixed(2);
}
