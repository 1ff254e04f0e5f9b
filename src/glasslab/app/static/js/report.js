// A self-contained HTML report of the current analysis, built in the browser and downloaded: every panel
// with its explanation, the CSS inlined and every chart as inline SVG, so the file opens offline anywhere.

import { download, esc, h, showToken, slug } from './dom.js';
import { render } from './chart.js';
import { Q, fetchDla, fetchLens, fetchPrediction, fetchQ, lensWindow, prediction } from './data.js';
import { PANEL_ORDER } from './panels/index.js';
import { position, state } from './store.js';

/** Fetch what the observation panels show at the selected token, so the report has them all. */
async function gather() {
  const p = position();
  await fetchPrediction(p);
  const pred = prediction(p);
  await Promise.allSettled([
    ...lensWindow(p).map((q) => fetchLens(q)),
    fetchDla(p),
    pred ? fetchQ(Q.neurons(p, pred.top[0].token || undefined)) : null,
  ]);
}

export async function buildReport() {
  if (!state.tokens.length) throw new Error('Analyse a prompt first: the report shows the current analysis.');
  await gather();
  const css = await fetch('/static/css/app.css').then((r) => r.text());
  const sections = [];
  render.report = true;
  try {
    for (const [id, panel] of PANEL_ORDER) {
      const el = h('section.panel.report-panel', { id: `panel-${id}` });
      try {
        panel.render(el);
      } catch (err) {
        el.append(h('p.error', {}, `This panel could not be drawn: ${err.message}`));
      }
      for (const x of el.querySelectorAll('.no-report, .loading, button, input, select, textarea')) x.remove();
      sections.push(el.outerHTML);
    }
  } finally {
    render.report = false;
  }
  const p = position();
  const tokens = state.tokens.map((t) => `<span class="tok${t.position === p ? ' selected' : ''}" title="position ${t.position}">${esc(showToken(t.token))}</span>`).join('');
  const when = new Date().toISOString().replace('T', ' ').slice(0, 16);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>glasslab report: ${esc(state.prompt)}</title><style>${css}
.report-panel{margin:14px 0;border-top:1px solid var(--line);border-radius:8px}</style></head>
<body><main><h1>glasslab report</h1>
<p><strong>Model:</strong> ${esc(state.model?.name ?? '')} \u00b7 <strong>created:</strong> ${esc(when)} UTC \u00b7 <strong>selected token:</strong> position ${p}</p>
<p><strong>Prompt:</strong> <code>${esc(state.prompt)}</code></p><div class="tokens">${tokens}</div>
<p class="muted">Each section shows one view of the model on this prompt, with what you see, how to read it and what it does not prove. Hover chart cells for their values.</p>
${sections.join('\n')}
</main></body></html>`;
}

export async function downloadReport() {
  const html = await buildReport();
  download(`glasslab-report-${slug(state.prompt)}.html`, html, 'text/html');
  return html;
}
