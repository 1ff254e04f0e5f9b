// Small charts drawn as SVG: signed horizontal bars, a waterfall (running sum) and the circuit graph.
// Each function returns a standalone SVG string: the app inserts it, exports and reports reuse it as is.

import { esc, fmt } from './dom.js';
import { inkOn, rgbAt, scaleIndex } from './colors.js';

const ORANGE = '#dd6d14'; // positive (blue-orange diverging scale)
const BLUE = '#2f6aa9'; // negative

function frame(width, height, title, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" `
    + `font-family="system-ui, sans-serif" font-size="11"><rect width="${width}" height="${height}" fill="#fff"/>`
    + `<text x="4" y="14" font-size="13" font-weight="600">${esc(title)}</text>${body}</svg>`;
}

const CHAR_W = 6.5; // a generous average width of an 11px system-ui character

/** A label cut at its end to fit `width` pixels: right-aligned labels would otherwise lose their start
 *  (a feature's id) off the left edge. The whole label stays in the bar's tooltip. */
function fitLabel(label, width) {
  const text = String(label);
  if (14 + CHAR_W * text.length <= width) return text; // the column was made wide enough for it
  const most = Math.max(3, Math.floor((width - 8) / (CHAR_W + 0.5))); // + 0.5: room for wide letters
  return `${text.slice(0, most - 1)}\u2026`;
}

/** spec: {title, labels, values, valueLabel, hover: [text], selected: index, width} */
export function barsSVG(spec) {
  const n = spec.labels.length;
  const rowH = 18;
  const labelW = Math.min(190, 14 + CHAR_W * Math.max(4, ...spec.labels.map((l) => String(l).length)));
  const width = spec.width ?? 620;
  const plotW = width - labelW - 70;
  const lo = Math.min(0, ...spec.values);
  const hi = Math.max(0, ...spec.values);
  const span = hi - lo || 1;
  const x = (v) => labelW + ((v - lo) / span) * plotW;
  const rows = spec.values.map((v, i) => {
    const y = 24 + i * rowH;
    const x0 = Math.min(x(0), x(v));
    const w = Math.max(1, Math.abs(x(v) - x(0)));
    const sel = spec.selected === i ? ' stroke="#e0115f" stroke-width="2"' : '';
    const tip = spec.hover ? spec.hover[i] : `${spec.labels[i]}: ${fmt(v, 4)}`;
    return `<g class="bar" data-i="${i}"><title>${esc(tip)}</title>`
      + `<text x="${labelW - 6}" y="${y + 12}" text-anchor="end">${esc(fitLabel(spec.labels[i], labelW))}</text>`
      + `<rect x="${x0}" y="${y + 2}" width="${w}" height="${rowH - 5}" fill="${v >= 0 ? ORANGE : BLUE}"${sel}/>`
      + `<text x="${Math.max(x(0), x(v)) + 4}" y="${y + 12}" fill="#333">${esc(spec.format ? spec.format(v) : fmt(v))}</text></g>`;
  });
  const axis = `<line x1="${x(0)}" x2="${x(0)}" y1="22" y2="${24 + n * rowH}" stroke="#888"/>`;
  const foot = `<text x="${labelW}" y="${38 + n * rowH}" fill="#555">${esc(spec.valueLabel || '')}</text>`;
  return frame(width, 44 + n * rowH, spec.title, axis + rows.join('') + foot);
}

/** A running sum: each step is a floating bar from the total before it to the total after it.
 *  spec: {title, labels, values (steps), start (label of the starting total 0), total: {label, value}, valueLabel} */
export function waterfallSVG(spec) {
  const n = spec.labels.length;
  const rowH = 17;
  const labelW = Math.min(150, 14 + CHAR_W * Math.max(6, ...spec.labels.map((l) => String(l).length)));
  const width = spec.width ?? 620;
  const plotW = width - labelW - 70;
  const ends = [];
  let run = 0;
  for (const v of spec.values) { ends.push([run, run + v]); run += v; }
  const all = ends.flat().concat([0, run]);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const span = hi - lo || 1;
  const x = (v) => labelW + ((v - lo) / span) * plotW;
  const rows = ends.map(([a, b], i) => {
    const y = 24 + i * rowH;
    const tip = spec.hover ? spec.hover[i] : `${spec.labels[i]}: ${fmt(b - a, 4)} (running total ${fmt(b, 4)})`;
    const link = i + 1 < n ? `<line x1="${x(b)}" x2="${x(b)}" y1="${y + rowH - 3}" y2="${y + rowH + 2}" stroke="#999"/>` : '';
    return `<g class="bar" data-i="${i}"><title>${esc(tip)}</title><text x="${labelW - 6}" y="${y + 11}" text-anchor="end">${esc(fitLabel(spec.labels[i], labelW))}</text>`
      + `<rect x="${Math.min(x(a), x(b))}" y="${y + 2}" width="${Math.max(1, Math.abs(x(b) - x(a)))}" height="${rowH - 5}" fill="${b >= a ? ORANGE : BLUE}"/>`
      + `<text x="${Math.max(x(a), x(b)) + 4}" y="${y + 11}" fill="#333">${esc((b - a >= 0 ? '+' : '') + fmt(b - a))}</text>${link}</g>`;
  });
  const yT = 24 + n * rowH;
  const total = spec.total
    ? `<text x="${labelW - 6}" y="${yT + 12}" text-anchor="end" font-weight="600">${esc(spec.total.label)}</text>`
      + `<rect x="${Math.min(x(0), x(spec.total.value))}" y="${yT + 3}" width="${Math.max(1, Math.abs(x(spec.total.value) - x(0)))}" height="${rowH - 5}" fill="#555"/>`
      + `<text x="${Math.max(x(0), x(spec.total.value)) + 4}" y="${yT + 12}" font-weight="600">${esc(fmt(spec.total.value))}</text>`
    : '';
  const axis = `<line x1="${x(0)}" x2="${x(0)}" y1="22" y2="${yT + rowH}" stroke="#888" stroke-dasharray="3 2"/>`;
  const foot = `<text x="${labelW}" y="${yT + rowH + 16}" fill="#555">${esc(spec.valueLabel || '')}</text>`;
  return frame(width, yT + rowH + 24, spec.title, axis + rows.join('') + total + foot);
}

/** Circuit graph: nodes placed by depth (layer) left to right, edges as curves, thickness = measured effect.
 *  spec: {title, nodes: [{id, label, depth, value, hover}], edges: [{source, target, value, measured, hover}]} */
export function graphSVG(spec) {
  const depths = [...new Set(spec.nodes.map((nd) => nd.depth))].sort((a, b) => a - b);
  const columns = depths.map((d) => spec.nodes.filter((nd) => nd.depth === d));
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const colW = 110;
  const rowH = 46;
  const width = Math.max(560, 40 + depths.length * colW);
  const height = 76 + tallest * rowH;
  const pos = new Map();
  columns.forEach((col, ci) => col.forEach((nd, ri) => {
    pos.set(nd.id, [30 + ci * colW + 40, 40 + (ri + 0.5) * ((height - 76) / col.length)]);
  }));
  const maxEdge = Math.max(1e-9, ...spec.edges.map((e) => Math.abs(e.value ?? 0)));
  const maxNode = Math.max(1e-9, ...spec.nodes.map((nd) => Math.abs(nd.value ?? 0)));
  const edges = spec.edges.filter((e) => pos.has(e.source) && pos.has(e.target)).map((e) => {
    const [x1, y1] = pos.get(e.source);
    const [x2, y2] = pos.get(e.target);
    const w = e.measured ? 1 + 5 * Math.abs(e.value ?? 0) / maxEdge : 1;
    const stroke = e.measured ? ((e.value ?? 0) >= 0 ? ORANGE : BLUE) : '#bbb';
    const dash = e.measured ? '' : ' stroke-dasharray="4 3"';
    const mx = (x1 + x2) / 2;
    return `<path d="M${x1 + 34},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 34},${y2}" fill="none" stroke="${stroke}" stroke-width="${w.toFixed(2)}"${dash} opacity="0.8"><title>${esc(e.hover || `${e.source} \u2192 ${e.target}`)}</title></path>`;
  });
  const nodes = spec.nodes.map((nd) => {
    const [x, y] = pos.get(nd.id);
    const rgb = nd.value === null || nd.value === undefined ? [238, 238, 238] : rgbAt('blueorange', scaleIndex(nd.value, -maxNode, maxNode, true));
    return `<g class="node" data-id="${esc(nd.id)}"><title>${esc(nd.hover || nd.label)}</title>`
      + `<rect x="${x - 34}" y="${y - 14}" width="68" height="28" rx="6" fill="rgb(${rgb.join(',')})" stroke="#333"/>`
      + `<text x="${x}" y="${y + 4}" text-anchor="middle" fill="${inkOn(rgb)}">${esc(nd.label)}</text></g>`;
  });
  const key = `<text x="4" y="${height - 22}" fill="#555">solid: measured path (width = size of its effect; orange positive, blue negative)</text>`
    + `<text x="4" y="${height - 8}" fill="#555">dashed: possible by layer order, not measured \u00b7 box colour: effect of patching the component alone</text>`;
  return frame(width, height, spec.title, edges.join('') + nodes.join('') + key);
}
