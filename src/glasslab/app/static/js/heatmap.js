// Heatmaps on canvas (fast for 512 x 512 attention patterns) with hover, click and keyboard, and the same
// spec serialised as standalone SVG for exports and reports.
//
// spec: {title, rows: [labels], cols: [labels], values: number[][] | {data: Float32Array, nRows, nCols},
//        rowTitle, colTitle, valueLabel, diverging, lo, hi, text(i, j) -> string, hover(i, j) -> string,
//        selected: {row, col}, onClick(i, j), cellW, cellH, scale}

import { esc, h, hideTip, showTip, fmt } from './dom.js';
import { inkOn, rgbAt, scaleIndex, table } from './colors.js';
import { settings } from './settings.js';

const FONT = '11px system-ui, sans-serif';
const SVG_RECT_LIMIT = 20000; // larger grids are embedded in SVG as a bitmap
let svgCount = 0; // unique gradient ids when several SVGs share one report

/** Flat values and their range, computed once per spec. */
export function prepare(spec) {
  if (spec._flat) return spec;
  let data, nRows, nCols;
  if (Array.isArray(spec.values)) {
    nRows = spec.values.length;
    nCols = nRows ? spec.values[0].length : 0;
    data = new Float32Array(nRows * nCols);
    for (let i = 0; i < nRows; i++) {
      const row = spec.values[i];
      for (let j = 0; j < nCols; j++) data[i * nCols + j] = row[j] === null || row[j] === undefined ? NaN : row[j];
    }
  } else {
    ({ data, nRows, nCols } = spec.values);
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < data.length; k++) {
    const v = data[k];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  spec._flat = { data, nRows, nCols, lo: spec.lo ?? lo, hi: spec.hi ?? hi };
  return spec;
}

function layout(spec, maxWidth) {
  const { nRows, nCols } = spec._flat;
  const labelW = spec.rowLabelWidth ?? Math.min(150, 12 + 6.5 * Math.max(3, ...spec.rows.map((r) => String(r).length)));
  const colLabelLen = Math.max(2, ...spec.cols.slice(0, 400).map((c) => String(c).length));
  const avail = Math.max(120, maxWidth - labelW - 16);
  const cellW = spec.cellW ?? Math.max(1, Math.min(48, Math.floor(avail / Math.max(1, nCols))));
  const cellH = spec.cellH ?? Math.max(1, Math.min(24, cellW < 6 ? cellW : 22));
  const rotate = cellW < colLabelLen * 6.5 + 6;
  const top = cellW >= 9 ? (rotate ? Math.min(90, 10 + colLabelLen * 5.5) : 18) : 4;
  return { labelW, cellW, cellH, top, rotate, width: labelW + nCols * cellW + 8, height: top + nRows * cellH + 4 };
}

function labelStep(cell) {
  return cell >= 11 ? 1 : Math.ceil(11 / Math.max(cell, 0.1));
}

/** Draw the spec into a new canvas inside `el` (replacing its content). Returns the canvas. One long function
 *  on purpose: the drawing, the hit-testing and the keyboard cursor share its layout and canvas context. */
export function drawHeatmap(el, spec) {
  hideTip(); // the tip may describe the canvas this one replaces, which gets no mouseleave once removed
  prepare(spec);
  const { data, nRows, nCols, lo, hi } = spec._flat;
  const L = layout(spec, spec.maxWidth ?? (el.clientWidth || 860));
  const dpr = window.devicePixelRatio || 1;
  const canvas = h('canvas.heatmap', {
    tabindex: 0,
    role: 'img',
    'aria-label': `${spec.title}: ${nRows} rows (${spec.rowTitle || ''}) by ${nCols} columns (${spec.colTitle || ''}). `
      + 'Arrow keys move between cells, Enter selects.',
    title: spec.tooltip || 'Hover a cell for its value; click (or Enter) to select it',
  });
  canvas.dataset.grid = JSON.stringify({ x: L.labelW, y: L.top, w: L.cellW, h: L.cellH, rows: nRows, cols: nCols });
  canvas.width = Math.ceil(L.width * dpr);
  canvas.height = Math.ceil(L.height * dpr);
  canvas.style.width = `${L.width}px`;
  canvas.style.height = `${L.height}px`;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, L.width, L.height);
  const scale = spec.scale ?? (spec.diverging ? 'blueorange' : settings.sequential);
  // Cells as one bitmap (one pixel per cell), scaled up without smoothing: fast for any size.
  const img = new ImageData(nCols, nRows);
  const lut = table(scale);
  for (let k = 0; k < data.length; k++) {
    const idx = scaleIndex(data[k], lo, hi, spec.diverging);
    const o = k * 4;
    if (idx < 0) {
      img.data[o] = img.data[o + 1] = img.data[o + 2] = 235;
    } else {
      img.data[o] = lut[idx * 3];
      img.data[o + 1] = lut[idx * 3 + 1];
      img.data[o + 2] = lut[idx * 3 + 2];
    }
    img.data[o + 3] = 255;
  }
  const bitmap = document.createElement('canvas');
  bitmap.width = nCols;
  bitmap.height = nRows;
  bitmap.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, L.labelW, L.top, nCols * L.cellW, nRows * L.cellH);
  if (L.cellW >= 6 && L.cellH >= 6) {
    ctx.strokeStyle = 'rgba(255,255,255,0.7)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let j = 1; j < nCols; j++) { ctx.moveTo(L.labelW + j * L.cellW + 0.5, L.top); ctx.lineTo(L.labelW + j * L.cellW + 0.5, L.top + nRows * L.cellH); }
    for (let i = 1; i < nRows; i++) { ctx.moveTo(L.labelW, L.top + i * L.cellH + 0.5); ctx.lineTo(L.labelW + nCols * L.cellW, L.top + i * L.cellH + 0.5); }
    ctx.stroke();
  }
  ctx.font = FONT;
  ctx.textBaseline = 'middle';
  if (spec.text && L.cellW >= 26 && L.cellH >= 14) {
    ctx.textAlign = 'center';
    for (let i = 0; i < nRows; i++) {
      for (let j = 0; j < nCols; j++) {
        const t = spec.text(i, j);
        if (!t) continue;
        ctx.fillStyle = inkOn(rgbAt(scale, scaleIndex(data[i * nCols + j], lo, hi, spec.diverging)));
        ctx.fillText(clip(ctx, t, L.cellW - 2), L.labelW + (j + 0.5) * L.cellW, L.top + (i + 0.5) * L.cellH);
      }
    }
  }
  ctx.fillStyle = '#333';
  ctx.textAlign = 'right';
  const rs = labelStep(L.cellH);
  for (let i = 0; i < nRows; i += rs) ctx.fillText(clip(ctx, String(spec.rows[i]), L.labelW - 6), L.labelW - 4, L.top + (i + 0.5) * L.cellH);
  const cs = labelStep(L.cellW);
  if (L.top > 8) {
    for (let j = 0; j < nCols; j += cs) {
      const x = L.labelW + (j + 0.5) * L.cellW;
      ctx.save();
      if (L.rotate) {
        ctx.translate(x, L.top - 4);
        ctx.rotate(-Math.PI / 3);
        ctx.textAlign = 'left';
        ctx.fillText(clip(ctx, String(spec.cols[j]), L.top * 1.1), 0, 0);
      } else {
        ctx.textAlign = 'center';
        ctx.fillText(String(spec.cols[j]), x, L.top - 9);
      }
      ctx.restore();
    }
  }
  const sel = spec.selected;
  const mark = (row, col, colourStr, width) => {
    ctx.strokeStyle = colourStr;
    ctx.lineWidth = width;
    const x = row === null || row === undefined ? [0, nRows] : [row, 1];
    const y = col === null || col === undefined ? [0, nCols] : [col, 1];
    ctx.strokeRect(L.labelW + y[0] * L.cellW + 1, L.top + x[0] * L.cellH + 1, y[1] * L.cellW - 2, x[1] * L.cellH - 2);
  };
  if (sel && (sel.row !== undefined || sel.col !== undefined)) mark(sel.row, sel.col, '#e0115f', 2);
  let base = null; // the drawing without a keyboard focus mark, captured on the first key press
  let focus = null;
  const cellAt = (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - L.labelW;
    const y = ev.clientY - r.top - L.top;
    const j = Math.floor(x / L.cellW);
    const i = Math.floor(y / L.cellH);
    return i >= 0 && j >= 0 && i < nRows && j < nCols ? [i, j] : null;
  };
  const describe = (i, j) => (spec.hover ? spec.hover(i, j)
    : `${spec.rows[i]} / ${spec.cols[j]}: ${fmt(data[i * nCols + j], 4)}${spec.valueLabel ? ` (${spec.valueLabel})` : ''}`);
  canvas.addEventListener('mousemove', (ev) => {
    const c = cellAt(ev);
    if (c) showTip(describe(...c), ev.clientX, ev.clientY);
    else hideTip();
  });
  canvas.addEventListener('mouseleave', hideTip);
  if (spec.onClick) {
    canvas.style.cursor = 'pointer';
    canvas.addEventListener('click', (ev) => { const c = cellAt(ev); if (c) spec.onClick(...c); });
  }
  // The keyboard cursor: read and set by focus.js, so it survives the redraw that Enter causes.
  canvas.cursor = () => focus;
  canvas.setCursor = ([i, j]) => {
    focus = [Math.max(0, Math.min(nRows - 1, i)), Math.max(0, Math.min(nCols - 1, j))];
    base = base || ctx.getImageData(0, 0, canvas.width, canvas.height);
    ctx.putImageData(base, 0, 0);
    ctx.save();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    mark(focus[0], focus[1], '#000', 2);
    ctx.restore();
  };
  canvas.addEventListener('keydown', (ev) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[ev.key]) {
      ev.preventDefault();
      const [i, j] = focus || [sel?.row ?? 0, sel?.col ?? 0];
      canvas.setCursor([i + moves[ev.key][0], j + moves[ev.key][1]]);
      const r = canvas.getBoundingClientRect();
      showTip(describe(...focus), r.left + L.labelW + focus[1] * L.cellW, r.top + L.top + (focus[0] + 1) * L.cellH);
    } else if ((ev.key === 'Enter' || ev.key === ' ') && focus && spec.onClick) {
      ev.preventDefault();
      spec.onClick(...focus);
    }
  });
  canvas.addEventListener('blur', hideTip);
  const legendEl = legend(spec, scale);
  el.replaceChildren(h('div.heatmap-wrap', {}, canvas), legendEl);
  return canvas;
}

const clipped = new Map(); // "width|text" -> shown text: measuring text is the slow part of drawing labels

function clip(ctx, text, width) {
  const key = `${Math.round(width)}|${text}`;
  let out = clipped.get(key);
  if (out === undefined) {
    out = text;
    if (ctx.measureText(text).width > width) {
      let t = text;
      while (t.length > 1 && ctx.measureText(`${t}\u2026`).width > width) t = t.slice(0, -1);
      out = `${t}\u2026`;
    }
    if (clipped.size > 20000) clipped.clear();
    clipped.set(key, out);
  }
  return out;
}

function legend(spec, scale) {
  const { lo, hi } = spec._flat;
  const stops = [];
  for (let k = 0; k <= 10; k++) {
    const [r, g, b] = rgbAt(scale, Math.round((k / 10) * 255));
    stops.push(`rgb(${r},${g},${b}) ${k * 10}%`);
  }
  const bound = Math.max(Math.abs(lo), Math.abs(hi));
  const [a, b] = spec.diverging ? [-bound, bound] : [lo, hi];
  return h('div.legend', {},
    h('span', {}, fmt(a)),
    h('span.ramp', { style: `background:linear-gradient(to right, ${stops.join(',')})` }),
    h('span', {}, fmt(b)),
    h('span.legend-label', {}, spec.valueLabel || ''),
    spec.rowTitle || spec.colTitle ? h('span.axes', {}, `rows: ${spec.rowTitle || ''} \u00b7 columns: ${spec.colTitle || ''}`) : null);
}

/** Standalone SVG of a heatmap (rects, or an embedded bitmap for very large grids). */
export function heatmapSVG(spec) {
  prepare(spec);
  const { data, nRows, nCols, lo, hi } = spec._flat;
  const L = layout(spec, spec.maxWidth ?? 860);
  const scale = spec.scale ?? (spec.diverging ? 'blueorange' : settings.sequential);
  const legendH = 34;
  const W = Math.max(L.width, 320);
  const H = L.height + legendH + 22;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="4" y="14" font-size="13" font-weight="600">${esc(spec.title)}</text>`,
    `<g transform="translate(0,22)">`];
  if (nRows * nCols <= SVG_RECT_LIMIT) {
    for (let i = 0; i < nRows; i++) {
      for (let j = 0; j < nCols; j++) {
        const v = data[i * nCols + j];
        const [r, g, b] = rgbAt(scale, scaleIndex(v, lo, hi, spec.diverging));
        const tipText = spec.hover ? spec.hover(i, j) : `${spec.rows[i]} / ${spec.cols[j]}: ${fmt(v, 4)}`;
        out.push(`<rect x="${L.labelW + j * L.cellW}" y="${L.top + i * L.cellH}" width="${L.cellW}" height="${L.cellH}" fill="rgb(${r},${g},${b})"><title>${esc(tipText)}</title></rect>`);
        const t = spec.text && L.cellW >= 26 && L.cellH >= 14 ? spec.text(i, j) : '';
        if (t) out.push(`<text x="${L.labelW + (j + 0.5) * L.cellW}" y="${L.top + (i + 0.5) * L.cellH + 4}" text-anchor="middle" fill="${inkOn([r, g, b])}">${esc(t.slice(0, Math.floor(L.cellW / 6)))}</text>`);
      }
    }
  } else {
    const c = document.createElement('canvas');
    c.width = nCols;
    c.height = nRows;
    const img = new ImageData(nCols, nRows);
    for (let k = 0; k < data.length; k++) {
      const [r, g, b] = rgbAt(scale, scaleIndex(data[k], lo, hi, spec.diverging));
      img.data.set([r, g, b, 255], k * 4);
    }
    c.getContext('2d').putImageData(img, 0, 0);
    out.push(`<image x="${L.labelW}" y="${L.top}" width="${nCols * L.cellW}" height="${nRows * L.cellH}" preserveAspectRatio="none" style="image-rendering:pixelated" href="${c.toDataURL('image/png')}"/>`);
  }
  const rs = labelStep(L.cellH);
  for (let i = 0; i < nRows; i += rs) out.push(`<text x="${L.labelW - 4}" y="${L.top + (i + 0.5) * L.cellH + 4}" text-anchor="end">${esc(String(spec.rows[i]).slice(0, 22))}</text>`);
  const cs = labelStep(L.cellW);
  if (L.top > 8) {
    for (let j = 0; j < nCols; j += cs) {
      const x = L.labelW + (j + 0.5) * L.cellW;
      out.push(L.rotate
        ? `<text transform="translate(${x},${L.top - 4}) rotate(-60)">${esc(String(spec.cols[j]).slice(0, 16))}</text>`
        : `<text x="${x}" y="${L.top - 6}" text-anchor="middle">${esc(spec.cols[j])}</text>`);
    }
  }
  const sel = spec.selected;
  if (sel && sel.row !== undefined && sel.col !== undefined && sel.row !== null && sel.col !== null) {
    out.push(`<rect x="${L.labelW + sel.col * L.cellW + 1}" y="${L.top + sel.row * L.cellH + 1}" width="${L.cellW - 2}" height="${L.cellH - 2}" fill="none" stroke="#e0115f" stroke-width="2"/>`);
  }
  const y = L.height + 6;
  const bound = Math.max(Math.abs(lo), Math.abs(hi));
  const [a, b] = spec.diverging ? [-bound, bound] : [lo, hi];
  const rampId = `ramp${++svgCount}`;
  out.push(`<defs><linearGradient id="${rampId}">${Array.from({ length: 11 }, (_, k) => {
    const [r, g, bl] = rgbAt(scale, Math.round((k / 10) * 255));
    return `<stop offset="${k * 10}%" stop-color="rgb(${r},${g},${bl})"/>`;
  }).join('')}</linearGradient></defs>`);
  out.push(`<text x="4" y="${y + 10}">${esc(fmt(a))}</text><rect x="54" y="${y}" width="160" height="12" fill="url(#${rampId})"/>`,
    `<text x="220" y="${y + 10}">${esc(fmt(b))}  ${esc(spec.valueLabel || '')}</text>`,
    `<text x="4" y="${y + 26}" fill="#555">rows: ${esc(spec.rowTitle || '')} · columns: ${esc(spec.colTitle || '')}</text>`);
  out.push('</g></svg>');
  return out.join('');
}
