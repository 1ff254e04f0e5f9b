// One chart on screen: its drawing (canvas heatmap or SVG), a toolbar to save it as SVG, PNG or JSON,
// and the same chart as standalone SVG for reports (when the page is being rendered for a report).

import { download, h, slug } from './dom.js';
import { drawHeatmap, heatmapSVG } from './heatmap.js';
import { barsSVG, graphSVG, waterfallSVG } from './svgcharts.js';

const SVG_OF = { heatmap: heatmapSVG, bars: barsSVG, waterfall: waterfallSVG, graph: graphSVG };

export const render = { report: false }; // true while a report is built: charts become inline SVG

export function chartSVG(spec) {
  return SVG_OF[spec.kind](spec);
}

/** SVG string -> PNG blob, drawn at 2x for sharpness. */
export function svgToPng(svg) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
    img.onload = () => {
      const c = document.createElement('canvas');
      c.width = img.width * 2;
      c.height = img.height * 2;
      const ctx = c.getContext('2d');
      ctx.scale(2, 2);
      ctx.drawImage(img, 0, 0);
      URL.revokeObjectURL(url);
      c.toBlob((b) => (b ? resolve(b) : reject(new Error('PNG encoding failed'))), 'image/png');
    };
    img.onerror = () => reject(new Error('the chart could not be drawn as an image'));
    img.src = url;
  });
}

/**
 * Append a chart to `parent`. spec.kind: heatmap | bars | waterfall | graph.
 * opts.json: the result (or part of it) this chart shows, offered as a JSON download.
 * opts.onBar(i): bars/waterfall click handler; opts.onNode(id): graph node click handler.
 */
export function chart(parent, spec, opts = {}) {
  const name = slug(spec.title);
  const fig = h('figure.chart', { dataset: { kind: spec.kind, title: spec.title } });
  if (render.report) {
    fig.innerHTML = chartSVG(spec);
    parent.append(fig);
    return fig;
  }
  const body = h('div.chart-body');
  const tools = h('div.chart-tools.no-report', {},
    h('button.small', { type: 'button', title: `Download "${spec.title}" as an SVG vector image`, onclick: () => download(`${name}.svg`, chartSVG(spec), 'image/svg+xml') }, 'SVG'),
    h('button.small', {
      type: 'button',
      title: `Download "${spec.title}" as a PNG picture`,
      onclick: async () => download(`${name}.png`, await svgToPng(chartSVG(spec))),
    }, 'PNG'),
    opts.json ? h('button.small', { type: 'button', title: 'Download the numbers behind this chart as JSON', onclick: () => download(`${name}.json`, JSON.stringify(opts.json, null, 1), 'application/json') }, 'JSON') : null);
  if (spec.kind === 'heatmap') {
    fig.append(h('figcaption', {}, spec.title), tools, body);
    parent.append(fig);
    drawHeatmap(body, spec);
  } else {
    fig.append(tools, body);
    parent.append(fig);
    body.innerHTML = chartSVG(spec);
    const svg = body.querySelector('svg');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', spec.title);
    if (opts.onBar) {
      for (const g of svg.querySelectorAll('g.bar')) {
        g.setAttribute('tabindex', '0');
        g.setAttribute('role', 'button');
        g.style.cursor = 'pointer';
        const go = () => opts.onBar(Number(g.dataset.i));
        g.addEventListener('click', go);
        g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
      }
    }
    if (opts.onNode) {
      for (const g of svg.querySelectorAll('g.node')) {
        g.setAttribute('tabindex', '0');
        g.setAttribute('role', 'button');
        g.style.cursor = 'pointer';
        const go = () => opts.onNode(g.dataset.id);
        g.addEventListener('click', go);
        g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
      }
    }
  }
  return fig;
}
