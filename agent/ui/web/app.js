// threadline's web view: trace list, one trace as a flame chart on a time axis with its
// critical path, per-endpoint critical-path flame graphs and the bottom-up table of critical
// operations. Plain JavaScript and canvas, no libraries: it is embedded in the agent's binary
// and works offline. Data: the JSON API under /api/ (docs/flame-view.md).
'use strict';

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------
const $ = (sel, el = document) => el.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtDur(ns) {
  if (ns === undefined || ns === null) return '';
  const a = Math.abs(ns);
  if (a >= 1e9) return (ns / 1e9).toFixed(a >= 1e10 ? 1 : 2) + ' s';
  if (a >= 1e6) return (ns / 1e6).toFixed(a >= 1e8 ? 0 : a >= 1e7 ? 1 : 2) + ' ms';
  if (a >= 1e3) return (ns / 1e3).toFixed(a >= 1e5 ? 0 : 1) + ' µs';
  return ns + ' ns';
}
const pct = (x) => (x * 100).toFixed(x >= 0.1 ? 0 : 1) + '%';

function fmtClock(unixNsString) {
  const ms = Number(BigInt(unixNsString) / 1000000n);
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

async function api(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
  return r.json();
}

// Service colours: distinct ones, remembered by the browser (localStorage) so a service keeps
// its colour on every page and across reloads. No red in the palette: red is the critical path.
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f',
                 '#a0cbe8', '#d4a6c8', '#b6992d', '#499894', '#bab0ac', '#8cd17d', '#ffbe7d'];
const colours = (() => {
  try {
    const m = JSON.parse(localStorage.getItem('tl.colours') || '{}');
    return Object.keys(m).length > 500 ? {} : m;
  } catch (e) { return {}; }
})();
function serviceColour(name) {
  let i = colours[name];
  if (i === undefined) {
    const used = new Array(PALETTE.length).fill(0);
    for (const v of Object.values(colours)) used[v % PALETTE.length]++;
    i = 0;
    for (let k = 1; k < PALETTE.length; k++) if (used[k] < used[i]) i = k;
    colours[name] = i;
    try { localStorage.setItem('tl.colours', JSON.stringify(colours)); } catch (e) { /* private mode */ }
  }
  return PALETTE[i % PALETTE.length];
}
// Colours handed out in name order, so the services of a page get them the same way each time.
const assignColours = (names) => { for (const n of [...names].sort()) serviceColour(n); };
// A span's label: "service: name", or "service → name" for a CLIENT span (a call it made).
const spanLabel = (service, name, client) => client ? `${service} → ${name}` : `${service}: ${name}`;
const frameService = (frame) => { const i = frame.indexOf(': '); return i < 0 ? frame : frame.slice(0, i); };

const tooltip = {
  el: null,
  show(html, x, y) {
    const t = this.el || (this.el = $('#tooltip'));
    t.innerHTML = html;
    t.hidden = false;
    const w = t.offsetWidth, hgt = t.offsetHeight;
    t.style.left = Math.min(x + 14, window.innerWidth - w - 8) + 'px';
    t.style.top = (y + 16 + hgt > window.innerHeight ? y - hgt - 10 : y + 16) + 'px';
  },
  hide() { if (this.el) this.el.hidden = true; },
};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

// What the page has drawn, for people debugging it and for the browser tests.
window.tl = { ready: null, timing: {} };
function markReady(page, startedAt, extra) {
  window.tl.timing[page] = performance.now() - startedAt;
  Object.assign(window.tl, extra || {});
  window.tl.ready = page;
  document.body.dataset.ready = page;
}

// ---------------------------------------------------------------------------------------------
// Routing: #/ (traces), #/trace/<id>, #/endpoints, #/endpoint?service=&operation=, #/operations
// ---------------------------------------------------------------------------------------------
let pageTimer = null;
let pageCleanup = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, params: new URLSearchParams(qs || '') };
}
function go(path, params) {
  const qs = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined && v !== null)).toString() : '';
  location.hash = '#' + path + (qs ? '?' + qs : '');
}

async function route() {
  if (pageTimer) { clearInterval(pageTimer); pageTimer = null; }
  if (pageCleanup) { pageCleanup(); pageCleanup = null; }
  tooltip.hide();
  document.body.dataset.ready = '';
  window.tl.ready = null;
  const { path, params } = parseHash();
  const main = $('#main');
  const nav = path.startsWith('/trace/') ? 'traces' : path.startsWith('/endpoint') ? 'endpoints' : path.slice(1) || 'traces';
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === nav);
  try {
    if (path.startsWith('/trace/')) await tracePage(main, path.slice(7));
    else if (path === '/endpoints') await endpointsPage(main);
    else if (path === '/endpoint') await endpointPage(main, params);
    else if (path === '/operations') await operationsPage(main, params);
    else await tracesPage(main, params);
  } catch (e) {
    main.replaceChildren(h('div', { class: 'err-box' }, String(e.message || e)));
    document.body.dataset.ready = 'error';
  }
}
window.addEventListener('hashchange', route);

function showSource(data) {
  if (data.source) $('#source').textContent = data.source;
  if (data.store) $('#store').textContent = `${data.store.traces} traces, ${data.store.spans} spans in the store (keeps ${data.store.max_traces})`;
}

// ---------------------------------------------------------------------------------------------
// Trace list
// ---------------------------------------------------------------------------------------------
async function tracesPage(main, params) {
  const started = performance.now();
  const filters = {
    service: params.get('service') || '',
    route: params.get('route') || '',
    status: params.get('status') || '',
    min_ms: params.get('min_ms') || '',
  };
  const query = () => new URLSearchParams(Object.entries({ ...filters, limit: 500 }).filter(([, v]) => v !== '')).toString();
  let data = await api('/api/traces?' + query());
  showSource(data);

  const serviceSel = h('select', { name: 'service' }, h('option', { value: '' }, 'any'));
  const routeIn = h('input', { name: 'route', placeholder: 'e.g. /checkout', value: filters.route, size: 16 });
  const statusSel = h('select', { name: 'status' }, h('option', { value: '' }, 'any'), h('option', { value: 'error' }, 'error'), h('option', { value: 'ok' }, 'ok'));
  statusSel.value = filters.status;
  const minIn = h('input', { name: 'min_ms', type: 'number', min: 0, step: 'any', placeholder: 'ms', value: filters.min_ms });
  const live = h('input', { type: 'checkbox', checked: true, name: 'live' });
  const count = h('span', { class: 'count' });
  const apply = () => go('/', { service: serviceSel.value, route: routeIn.value.trim(), status: statusSel.value, min_ms: minIn.value });
  for (const el of [serviceSel, statusSel]) el.addEventListener('change', apply);
  for (const el of [routeIn, minIn]) el.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
  minIn.addEventListener('change', apply);

  const tbody = h('tbody');
  const table = h('table', { class: 'grid', id: 'trace-list' },
    h('thead', {}, h('tr', {},
      h('th', { class: 'num' }, 'Duration'), h('th', {}, 'Service'), h('th', {}, 'Entry operation'),
      h('th', {}, 'Status'), h('th', { class: 'num' }, 'Spans'), h('th', {}, 'Services'), h('th', {}, 'Started'))),
    tbody);

  function fill(d) {
    assignColours(d.services);
    const current = serviceSel.value || filters.service;
    serviceSel.replaceChildren(h('option', { value: '' }, 'any'), ...d.services.map((s) => h('option', { value: s }, s)));
    serviceSel.value = current;
    count.textContent = `${d.matched} matching of ${d.store.traces}` + (d.matched > d.traces.length ? ` (slowest ${d.traces.length} shown)` : '');
    const max = d.traces.reduce((m, t) => Math.max(m, t.duration_ns), 1);
    tbody.replaceChildren(...d.traces.map((t) => h('tr', { class: 'row', 'data-trace': t.trace_id, onclick: () => go('/trace/' + t.trace_id) },
      h('td', { class: 'num' }, h('span', { class: 'durbar' + (t.status === 'error' ? ' err' : ''), style: `width:${Math.max(2, 70 * t.duration_ns / max)}px` }), fmtDur(t.duration_ns)),
      h('td', {}, h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(t.service)}` }), t.service)),
      h('td', {}, t.operation, t.kind === 'CLIENT' ? h('span', { class: 'muted' }, ' (client)') : null),
      h('td', {}, h('span', { class: 'badge ' + (t.status === 'error' ? 'error' : 'ok') }, t.status === 'error' ? `error (${t.error_spans})` : 'ok'),
        t.sampled ? null : h('span', { class: 'badge grey', title: 'head sampling dropped these spans from the output; the view keeps them' }, ' not exported')),
      h('td', { class: 'num' }, t.span_count, t.truncated ? '+' : ''),
      h('td', {}, t.services.map((s) => h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(s)}` }), s))),
      h('td', { class: 'muted' }, fmtClock(t.start_unix_ns)))));
    if (!d.traces.length) tbody.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' },
      d.store.traces ? 'No trace matches these filters.' : 'No traces yet: send some requests to a traced service (a trace shows up about a second after its last span).')));
  }
  fill(data);
  main.replaceChildren(
    h('div', { class: 'filters' },
      h('label', {}, 'service', serviceSel), h('label', {}, 'route', routeIn), h('label', {}, 'status', statusSel),
      h('label', {}, 'min duration', minIn, 'ms'), h('label', {}, live, 'live'), count),
    table,
    h('p', { class: 'note' }, 'Slowest first. A trace appears about a second after its last span. Click one for its flame chart and critical path.'));
  markReady('traces', started, { traces: data.traces.map((t) => t.trace_id) });

  let generation = data.generation;
  pageTimer = setInterval(async () => {
    if (!live.checked || document.hidden) return;
    try {
      const d = await api('/api/traces?' + query() + '&since=' + generation);
      if (d.unchanged) return;
      generation = d.generation;
      showSource(d);
      fill(d);
      window.tl.traces = d.traces.map((t) => t.trace_id);
    } catch (e) { /* the agent may be restarting: try again on the next tick */ }
  }, 2000);
}

// ---------------------------------------------------------------------------------------------
// One trace: flame chart on a time axis with the critical path
// ---------------------------------------------------------------------------------------------
async function tracePage(main, id) {
  const started = performance.now();
  // Attributes are fetched per span when one is clicked: a 10,000-span trace stays a few MB.
  const t = await api('/api/traces/' + encodeURIComponent(id) + '?attributes=0');
  const fetched = performance.now();
  showSource(t);
  const spans = t.spans;
  const root = spans[t.root];
  const services = [...new Set(spans.map((s) => s.service))].sort();
  assignColours(services);
  const errors = spans.filter((s) => s.status === 'ERROR').length;

  // Critical path by operation within this trace (a CLIENT span's own time is the network).
  const byFrame = new Map();
  for (const s of spans) {
    if (!s.critical_ns) continue;
    const client = s.kind === 'CLIENT';
    const k = s.service + ': ' + s.name + (client ? '\u0001' : '');
    const e = byFrame.get(k) || { label: spanLabel(s.service, s.name, client), service: s.service, ns: 0, client, net: 0 };
    e.ns += s.critical_ns;
    if (client && s.network_before_ns !== undefined) e.net += s.critical_ns;
    byFrame.set(k, e);
  }
  const contributors = [...byFrame.values()].sort((a, b) => b.ns - a.ns);
  const network = spans.reduce((sum, s) => sum + (s.kind === 'CLIENT' && s.network_before_ns !== undefined ? s.critical_ns : 0), 0);
  const onPath = (s) => spanLabel(s.service, s.name, s.kind === 'CLIENT');

  const detail = h('div', { class: 'panel detail', id: 'span-detail' }, h('p', { class: 'muted' }, 'Click a span for its details.'));
  const chartHost = h('div', { class: 'chart-wrap', id: 'trace-chart' });
  const cpRows = contributors.slice(0, 10).map((c) => h('tr', {},
    h('td', {}, h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(c.service)}` }), c.label),
      c.client ? h('span', { class: 'muted', title: 'a CLIENT span\'s own time: outside its traced server, network and queueing; with no traced server, the whole call' },
        c.net >= c.ns ? ' network + queueing' : c.net > 0 ? ' network + queueing, and calls to untraced servers' : ' call to an untraced server') : null),
    h('td', { class: 'num' }, fmtDur(c.ns)),
    h('td', {}, h('span', { class: 'sharebar', style: `width:${Math.max(1, 120 * c.ns / t.critical_path_ns)}px` }), ' ', pct(c.ns / t.critical_path_ns))));

  main.replaceChildren(
    h('div', { class: 'summary' },
      h('div', {}, h('span', { class: 'k' }, 'entry'), h('span', { class: 'big' }, root.name), ' ', h('span', { class: 'muted' }, root.service)),
      h('div', {}, h('span', { class: 'k' }, 'duration'), h('span', { class: 'big' }, fmtDur(t.duration_ns))),
      h('div', {}, h('span', { class: 'k' }, 'spans'), h('span', { class: 'big' }, spans.length)),
      h('div', {}, h('span', { class: 'k' }, 'status'), errors ? h('span', { class: 'badge error' }, `${errors} error span${errors > 1 ? 's' : ''}`) : h('span', { class: 'badge ok' }, 'ok')),
      h('div', {}, h('span', { class: 'k' }, 'network + queueing on the critical path'), h('span', { class: 'big' }, fmtDur(network)), ' ', h('span', { class: 'muted' }, pct(network / (t.critical_path_ns || 1)))),
      h('div', {}, h('span', { class: 'k' }, 'trace'), h('span', { class: 'muted' }, t.trace_id)),
      t.sampled ? null : h('span', { class: 'badge grey' }, 'not exported (head sampling)')),
    h('div', { class: 'legend', id: 'service-legend' }, services.map((s) => h('span', { class: 'chip', 'data-service': s }, h('span', { class: 'swatch', style: `background:${serviceColour(s)}` }), s))),
    h('div', { class: 'legend' },
      h('span', {}, legendSample('crit'), 'critical path (what the request waited for)'),
      h('span', {}, legendSample('faded'), 'off the path'),
      h('span', {}, legendSample('net'), 'network + queueing (a call outside its server)'),
      h('span', {}, legendSample('inferred'), 'parent inferred on this node (tuple, thread, goroutine, forwarded...)'),
      h('span', {}, legendSample('missing'), 'parent span missing (placed by time)'),
      h('span', {}, '→ a call (CLIENT span) · wheel: zoom · drag: pan · double-click: reset')),
    h('div', { class: 'split' },
      h('div', {}, chartHost,
        h('h2', {}, `Critical path: ${fmtDur(t.critical_path_ns)}`),
        h('p', { class: 'note' }, 'Where the request\'s time went: each operation\'s own time on the critical path (the chain of work that decided the duration). Speeding up anything else does not make this request faster.'),
        h('table', { class: 'grid cp-table', id: 'critical-path' }, h('tbody', {}, cpRows)),
        (t.adopted || t.shifted) ? h('p', { class: 'note' },
          t.adopted ? `${t.adopted} span(s) name a parent that is not in the trace (an untraced service, or another node); they are drawn under the span that encloses them in time. ` : '',
          t.shifted ? `${t.shifted} SERVER span(s) did not fit inside their CLIENT span (clock skew between hosts) and were moved into it.` : '') : null),
      detail));

  const built = performance.now();
  const chart = new TraceChart(chartHost, t, (s) => showSpan(detail, t, s));
  pageCleanup = () => chart.destroy();
  window.tl.timing.trace_parts = { fetch_ms: fetched - started, page_ms: built - fetched, chart_ms: performance.now() - built };
  markReady('trace', started, {
    trace: {
      id: t.trace_id, spans: spans.length, services,
      onPath: spans.filter((s) => s.on_path).map((s) => s.service + ': ' + s.name),
      onPathLabels: spans.filter((s) => s.on_path).map(onPath),
      drawn: chart.drawnSpans, rows: chart.rows,
    },
  });
}

function legendSample(kind) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', '30');
  svg.setAttribute('height', '12');
  svg.setAttribute('class', 'sample');
  const add = (tag, attrs) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  };
  if (kind === 'crit') add('rect', { x: 0, y: 4, width: 30, height: 4, fill: '#d1242f' });
  else if (kind === 'faded') add('rect', { x: 0, y: 1, width: 30, height: 10, fill: '#4e79a7', opacity: 0.38 });
  else if (kind === 'net') {
    add('rect', { x: 0, y: 1, width: 30, height: 10, fill: '#4e79a7' });
    for (let x = -10; x < 30; x += 4) add('line', { x1: x, y1: 11, x2: x + 10, y2: 1, stroke: 'rgba(30,35,48,0.6)', 'stroke-width': 1.2 });
  } else {
    add('rect', { x: 6, y: 2, width: 24, height: 10, fill: '#4e79a7' });
    add('line', { x1: 7, y1: 0, x2: 7, y2: 12, stroke: '#1d2330', 'stroke-width': 2,
                  'stroke-dasharray': kind === 'inferred' ? '4 2' : '1.5 2' });
  }
  return svg;
}

async function showSpan(panel, t, i) {
  const s = t.spans[i];
  if (!s.attributes) {
    try {
      const d = await api(`/api/traces/${t.trace_id}/spans/${s.span_id}`);
      s.attributes = d.attributes;
    } catch (e) { s.attributes = { error: String(e.message || e) }; }
  }
  const parent = s.parent >= 0 ? t.spans[s.parent] : null;
  const edge = s.edge === 'parent' ? (s.parent_source || 'span id') :
    s.edge === 'adopted' ? 'missing: the parent span is not in the trace; placed under the span enclosing it' :
    s.edge === 'detached' ? 'none in the trace; hung under the root' : 'root';
  const rows = [
    ['service', s.service], ['kind', s.kind], ['status', s.status + (s.status_message ? ' — ' + s.status_message : '')],
    ['duration', fmtDur(s.duration_ns)], ['starts at', '+' + fmtDur(s.start_ns)], ['self time', fmtDur(s.self_ns)],
    ['on critical path', s.critical_ns ? `${fmtDur(s.critical_ns)} (${pct(s.critical_ns / t.critical_path_ns)} of the path)` : 'no'],
  ];
  if (s.network_before_ns !== undefined)
    rows.push(['network + queueing', `${fmtDur(s.network_before_ns + s.network_after_ns)} (${fmtDur(s.network_before_ns)} before the server started, ${fmtDur(s.network_after_ns)} after it ended)`]);
  if (s.shift_ns) rows.push(['clock skew', `moved by ${fmtDur(s.shift_ns)} to fit its CLIENT span`]);
  rows.push(['parent', parent ? parent.service + ': ' + parent.name : '—'], ['parent from', edge], ['span id', s.span_id]);
  if (s.parent_span_id) rows.push(['parent span id', s.parent_span_id]);
  if (s.pid) rows.push(['pid', s.pid]);
  const attrs = Object.entries(s.attributes || {});
  panel.replaceChildren(
    h('h3', {}, h('span', { class: 'swatch', style: `background:${serviceColour(s.service)}` }), ' ', spanLabel(s.service, s.name, s.kind === 'CLIENT')),
    h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
    attrs.length ? h('h2', {}, 'Attributes') : null,
    attrs.length ? h('dl', {}, attrs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'string' ? v : JSON.stringify(v))])) : null);
}

const ROW_H = 20;
const LANE_H = 14;  // the critical-path lane on top
const AXIS_H = 22;

class TraceChart {
  constructor(host, trace, onSelect) {
    this.t = trace;
    this.spans = trace.spans;
    this.onSelect = onSelect;
    this.selected = -1;
    this.layout();
    this.view0 = 0;
    this.view1 = Math.max(1, trace.duration_ns);
    this.axis = h('canvas', { class: 'axis' });
    this.scroll = h('div', { class: 'chart-scroll' });
    this.canvas = h('canvas', {});
    this.spacer = h('div', {});
    this.scroll.append(this.canvas, this.spacer);
    host.replaceChildren(this.axis, this.scroll);
    this.host = host;
    this.resize = () => this.fit();
    window.addEventListener('resize', this.resize);
    this.scroll.addEventListener('scroll', () => this.draw());
    this.bindMouse();
    this.fit();
  }

  destroy() { window.removeEventListener('resize', this.resize); }

  // Rows: a span goes below its parent, in the first row free at its start time; parallel
  // children take separate rows. Children are placed in start order, parents before children.
  layout() {
    const spans = this.spans;
    const n = spans.length;
    const kids = Array.from({ length: n }, () => []);
    for (let i = 0; i < n; i++) if (spans[i].parent >= 0) kids[spans[i].parent].push(i);
    for (const k of kids) k.sort((a, b) => spans[a].start_ns - spans[b].start_ns || a - b);
    const row = new Int32Array(n);
    const rowEnd = [];
    const stack = [this.t.root];
    row[this.t.root] = 0;
    rowEnd[0] = spans[this.t.root].start_ns + spans[this.t.root].duration_ns;
    while (stack.length) {
      const p = stack.pop();
      const list = kids[p];
      for (let k = list.length - 1; k >= 0; k--) stack.push(list[k]);  // first child popped first
      for (const c of list) {
        const s = spans[c];
        let r = row[p] + 1;
        // Bounded search: a span with thousands of parallel children opens new rows instead of
        // scanning them all.
        for (let tries = 0; r < rowEnd.length && rowEnd[r] > s.start_ns; r++) {
          if (++tries > 64) { r = rowEnd.length; break; }
        }
        row[c] = r;
        rowEnd[r] = s.start_ns + s.duration_ns;
      }
    }
    // The stack order above places children when their parent is popped, so a child's row is
    // set before its own children look at it.
    this.row = row;
    this.rows = rowEnd.length;
    this.byRow = Array.from({ length: this.rows }, () => []);
    for (let i = 0; i < n; i++) this.byRow[row[i]].push(i);
    for (const r of this.byRow) r.sort((a, b) => spans[a].start_ns - spans[b].start_ns);
    this.segments = this.t.segments;
  }

  fit() {
    const dpr = window.devicePixelRatio || 1;
    this.width = Math.max(300, this.host.clientWidth - 2);
    const full = LANE_H + 6 + this.rows * ROW_H + 6;
    this.viewH = Math.min(full, Math.max(260, window.innerHeight - 330));
    this.scroll.style.height = this.viewH + 'px';
    this.spacer.style.height = Math.max(0, full - this.viewH) + 'px';
    for (const [c, hgt] of [[this.canvas, this.viewH], [this.axis, AXIS_H]]) {
      c.width = Math.round(this.width * dpr);
      c.height = Math.round(hgt * dpr);
      c.style.width = this.width + 'px';
      c.style.height = hgt + 'px';
      c.getContext('2d').setTransform(dpr, 0, 0, dpr, 0, 0);
    }
    if (!this.hatch) {
      const p = document.createElement('canvas');
      p.width = p.height = 6;
      const g = p.getContext('2d');
      g.strokeStyle = 'rgba(30,35,48,0.4)';
      g.lineWidth = 1;
      g.beginPath(); g.moveTo(0, 6); g.lineTo(6, 0); g.stroke();
      this.hatch = this.canvas.getContext('2d').createPattern(p, 'repeat');
    }
    this.draw();
  }

  x(ns) { return (ns - this.view0) / (this.view1 - this.view0) * this.width; }
  tAt(px) { return this.view0 + px / this.width * (this.view1 - this.view0); }

  draw() {
    const g = this.canvas.getContext('2d');
    const top = this.scroll.scrollTop;
    const W = this.width;
    g.clearRect(0, 0, W, this.viewH);
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    const spans = this.spans;
    const y0 = LANE_H + 6 - top;  // first span row
    let drawn = 0;

    // The critical-path lane: who holds the path, over time.
    if (top < LANE_H + 6) {
      g.fillStyle = '#fff';
      g.fillRect(0, -top, W, LANE_H + 4);
      for (const [node, s, e] of this.segments) {
        const x0 = this.x(s), x1 = this.x(e);
        if (x1 < 0 || x0 > W) continue;
        g.fillStyle = serviceColour(spans[node].service);
        g.fillRect(x0, 2 - top, Math.max(1, x1 - x0), LANE_H - 4);
      }
      g.fillStyle = 'rgba(209,36,47,1)';
      g.fillRect(0, LANE_H - 2 - top, W, 2);
    }

    const firstRow = Math.max(0, Math.floor((top - LANE_H - 6) / ROW_H));
    const lastRow = Math.min(this.rows - 1, Math.ceil((top + this.viewH) / ROW_H));
    const pxPerNs = W / (this.view1 - this.view0);
    const outlined = [];  // spans whose parent edge is inferred or missing
    for (let r = firstRow; r <= lastRow; r++) {
      const y = y0 + r * ROW_H;
      for (const i of this.byRow[r]) {
        const s = spans[i];
        let x0 = this.x(s.start_ns);
        let w = s.duration_ns * pxPerNs;
        if (x0 > W || x0 + w < 0) continue;
        if (w < 1) w = 1;
        if (x0 < 0) { w += x0; x0 = 0; }
        if (x0 + w > W) w = W - x0;
        drawn++;
        g.globalAlpha = s.on_path ? 1 : 0.38;
        g.fillStyle = serviceColour(s.service);
        g.fillRect(x0, y + 1, w, ROW_H - 3);
        if (s.network_before_ns !== undefined && w > 3) {
          // Network + queueing: the CLIENT span's time outside its SERVER child.
          g.fillStyle = this.hatch;
          const nb = s.network_before_ns * pxPerNs, na = s.network_after_ns * pxPerNs;
          if (nb >= 1) g.fillRect(this.x(s.start_ns), y + 1, nb, ROW_H - 3);
          if (na >= 1) g.fillRect(this.x(s.start_ns + s.duration_ns) - na, y + 1, na, ROW_H - 3);
        }
        if (s.status === 'ERROR') {
          g.fillStyle = '#c62828';
          g.fillRect(x0, y + 1, Math.min(w, 3), ROW_H - 3);
        }
        g.globalAlpha = 1;
        if (i === this.selected) {
          g.strokeStyle = '#111';
          g.lineWidth = 2;
          g.strokeRect(x0 + 1, y + 2, Math.max(1, w - 2), ROW_H - 5);
        }
        if (w > 36) {
          let label = spanLabel(s.service, s.name, s.kind === 'CLIENT') + '  ' + fmtDur(s.duration_ns);
          const maxChars = Math.floor((w - 8) / 6.1);
          if (label.length > maxChars) label = label.slice(0, Math.max(1, maxChars - 1)) + '…';
          if (s.network_before_ns !== undefined) {
            // Keep the label readable over the hatching.
            g.fillStyle = 'rgba(255,255,255,0.75)';
            g.fillRect(x0 + 2, y + 3, Math.min(w - 4, g.measureText(label).width + 4), ROW_H - 7);
          }
          g.fillStyle = s.on_path ? '#111' : '#333';
          g.fillText(label, x0 + 4, y + ROW_H / 2 - 0.5);
        }
        if (s.edge === 'adopted' || s.edge === 'detached' || (s.edge === 'parent' && s.parent_source && s.parent_source !== 'header'))
          outlined.push([i, x0, y, w]);
      }
    }
    // The critical path: a red bar under each span where its own time is on the path.
    g.fillStyle = '#d1242f';
    for (const [node, s, e] of this.segments) {
      const r = this.row[node];
      if (r < firstRow || r > lastRow) continue;
      const x0 = this.x(s), x1 = this.x(e);
      if (x1 < 0 || x0 > W) continue;
      g.fillRect(x0, y0 + r * ROW_H + ROW_H - 5, Math.max(1, x1 - x0), 3);
    }
    // Parent edges that are not a span id sent in the request: a connector from the parent's
    // row down the span's left edge, dashed when the parent was inferred on this node (tuple,
    // thread), dotted when the parent span is missing and the span was placed by time.
    g.strokeStyle = 'rgba(29,35,48,0.85)';
    g.lineWidth = 2;
    for (const [i, x0, y, w] of outlined) {
      if (w < 4) continue;  // too thin to tell apart: the tooltip and the details say it
      const s = spans[i];
      const yp = y0 + this.row[s.parent] * ROW_H + ROW_H - 2;
      g.setLineDash(s.edge === 'parent' ? [4, 2] : [1.5, 2]);
      g.beginPath(); g.moveTo(x0 + 1, Math.min(yp, y)); g.lineTo(x0 + 1, y + ROW_H - 3); g.stroke();
    }
    g.setLineDash([]);
    this.drawnSpans = drawn;
    this.drawAxis();
  }

  drawAxis() {
    const g = this.axis.getContext('2d');
    const W = this.width;
    g.clearRect(0, 0, W, AXIS_H);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    g.textBaseline = 'middle';
    const span = this.view1 - this.view0;
    const raw = span / Math.max(2, W / 110);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    g.strokeStyle = '#e3e5ea';
    for (let t = Math.ceil(this.view0 / step) * step; t <= this.view1; t += step) {
      const x = this.x(t);
      g.beginPath(); g.moveTo(x + 0.5, AXIS_H - 6); g.lineTo(x + 0.5, AXIS_H); g.stroke();
      const label = fmtDur(t);
      if (x + 3 + g.measureText(label).width < W) g.fillText(label, x + 3, AXIS_H / 2);
    }
  }

  hit(px, py) {
    const top = this.scroll.scrollTop;
    const y = py + top - LANE_H - 6;
    if (y < 0) return -1;
    const r = Math.floor(y / ROW_H);
    if (r >= this.rows) return -1;
    const t = this.tAt(px);
    const tol = (this.view1 - this.view0) / this.width * 2;  // 2 px: thin spans are hard to hit
    const list = this.byRow[r];
    let lo = 0, hi = list.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.spans[list[mid]].start_ns <= t + tol) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    for (let k = found; k >= 0 && k > found - 8; k--) {
      const s = this.spans[list[k]];
      if (s.start_ns - tol <= t && t <= s.start_ns + s.duration_ns + tol) return list[k];
    }
    return -1;
  }

  bindMouse() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('mousedown', (e) => { drag = { x: e.clientX, v0: this.view0, v1: this.view1, moved: false }; });
    window.addEventListener('mouseup', () => { setTimeout(() => { drag = null; }, 0); });
    c.addEventListener('mousemove', (e) => {
      const rect = c.getBoundingClientRect();
      if (drag && e.buttons) {
        const dx = e.clientX - drag.x;
        if (Math.abs(dx) > 2) drag.moved = true;
        const dt = dx / this.width * (drag.v1 - drag.v0);
        this.view0 = drag.v0 - dt;
        this.view1 = drag.v1 - dt;
        this.draw();
        tooltip.hide();
        return;
      }
      const i = this.hit(e.clientX - rect.left, e.clientY - rect.top);
      c.style.cursor = i >= 0 ? 'pointer' : 'default';
      if (i < 0) { tooltip.hide(); return; }
      tooltip.show(this.describe(i), e.clientX, e.clientY);
    });
    c.addEventListener('mouseleave', () => tooltip.hide());
    c.addEventListener('click', (e) => {
      if (drag && drag.moved) return;
      const rect = c.getBoundingClientRect();
      const i = this.hit(e.clientX - rect.left, e.clientY - rect.top);
      if (i < 0) return;
      this.selected = i;
      this.draw();
      this.onSelect(i);
    });
    c.addEventListener('wheel', (e) => {
      if (e.shiftKey) return;  // shift+wheel scrolls rows
      e.preventDefault();
      const rect = c.getBoundingClientRect();
      const t = this.tAt(e.clientX - rect.left);
      const f = Math.pow(1.0015, e.deltaY);
      const minSpan = 1000;  // 1 µs
      const span = Math.max(minSpan, (this.view1 - this.view0) * f);
      const a = (t - this.view0) / (this.view1 - this.view0);
      this.view0 = t - a * span;
      this.view1 = this.view0 + span;
      this.draw();
    }, { passive: false });
    c.addEventListener('dblclick', () => { this.view0 = 0; this.view1 = Math.max(1, this.t.duration_ns); this.draw(); });
  }

  describe(i) {
    const s = this.spans[i];
    const t = this.t;
    const lines = [`<b>${esc(spanLabel(s.service, s.name, s.kind === 'CLIENT'))}</b> <span class="t-muted">${s.kind}${s.status === 'ERROR' ? ' · ERROR' : ''}</span>`,
      `duration ${fmtDur(s.duration_ns)} · self ${fmtDur(s.self_ns)} · starts +${fmtDur(s.start_ns)}`,
      s.critical_ns ? `critical path: ${fmtDur(s.critical_ns)} (${pct(s.critical_ns / t.critical_path_ns)})` : '<span class="t-muted">not on the critical path</span>'];
    if (s.network_before_ns !== undefined)
      lines.push(`network + queueing: ${fmtDur(s.network_before_ns + s.network_after_ns)} (${fmtDur(s.network_before_ns)} before, ${fmtDur(s.network_after_ns)} after the server)`);
    if (s.edge === 'adopted') lines.push('<span class="t-muted">parent span missing: placed under the span enclosing it</span>');
    else if (s.edge === 'detached') lines.push('<span class="t-muted">a second root of this trace, hung under the first</span>');
    else if (s.parent_source && s.parent_source !== 'header' && s.parent_source !== 'root') lines.push(`<span class="t-muted">parent inferred: ${esc(s.parent_source)}</span>`);
    if (s.shift_ns) lines.push(`<span class="t-muted">moved ${fmtDur(s.shift_ns)} for clock skew</span>`);
    return lines.join('<br>');
  }
}

// ---------------------------------------------------------------------------------------------
// Endpoints, their aggregated critical-path flame graphs, and the bottom-up table
// ---------------------------------------------------------------------------------------------
async function endpointsPage(main) {
  const started = performance.now();
  const d = await api('/api/endpoints');
  showSource(d);
  const rows = d.endpoints.map((e) => h('tr', { class: 'row', onclick: () => go('/endpoint', { service: e.service, operation: e.operation }) },
    h('td', {}, h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(e.service)}` }), e.service)),
    h('td', {}, e.operation), h('td', { class: 'num' }, e.traces),
    h('td', { class: 'num' }, e.errors ? h('span', { class: 'badge error' }, e.errors) : '0'),
    h('td', { class: 'num' }, fmtDur(e.p50_ns)), h('td', { class: 'num' }, fmtDur(e.p90_ns)),
    h('td', { class: 'num' }, fmtDur(e.p99_ns)), h('td', { class: 'num' }, fmtDur(e.max_ns))));
  main.replaceChildren(
    h('h1', {}, 'Endpoints'),
    h('p', { class: 'note' }, 'An endpoint is the entry span of a trace: its service and operation. The ones costing their callers most time first. Click one for the critical path aggregated over its traces.'),
    h('table', { class: 'grid', id: 'endpoints' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Service'), h('th', {}, 'Operation'), h('th', { class: 'num' }, 'Traces'),
        h('th', { class: 'num' }, 'Errors'), h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p90'),
        h('th', { class: 'num' }, 'p99'), h('th', { class: 'num' }, 'max'))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No traces yet.')))));
  markReady('endpoints', started, { endpoints: d.endpoints });
}

const SLOWEST = [100, 50, 10, 5, 1];

function slowestPicker(current, onPick) {
  return h('span', { class: 'seg', id: 'slowest' }, SLOWEST.map((p) =>
    h('button', { class: p === current ? 'on' : '', onclick: () => onPick(p) }, p === 100 ? 'all traces' : `slowest ${p}%`)));
}

function operationsTable(ops, total, traces) {
  return h('table', { class: 'grid', id: 'operations' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Operation (service: span)'), h('th', { class: 'num' }, 'On critical paths'),
      h('th', {}, 'Share'), h('th', { class: 'num' }, 'Traces'), h('th', { class: 'num' }, 'Mean where present'),
      h('th', { class: 'num' }, 'Max'), h('th', { class: 'num' }, 'Endpoints'))),
    h('tbody', {}, ops.length ? ops.map((o) => h('tr', {},
      h('td', {}, h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(frameService(o.frame))}` }),
        o.client ? o.frame.replace(': ', ' → ') : o.frame),
        o.client ? h('span', { class: 'muted', title: 'a CLIENT span\'s own time: network and queueing when its server is traced, else the whole call' }, ' call: network + queueing or untraced server') : null),
      h('td', { class: 'num' }, fmtDur(o.critical_ns)),
      h('td', {}, h('span', { class: 'sharebar', style: `width:${Math.max(1, 120 * o.share)}px` }), ' ', pct(o.share)),
      h('td', { class: 'num' }, `${o.traces} of ${traces}`), h('td', { class: 'num' }, fmtDur(o.mean_ns)),
      h('td', { class: 'num' }, fmtDur(o.max_ns)), h('td', { class: 'num' }, o.endpoints))) :
      h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No traces.'))));
}

async function endpointPage(main, params) {
  const started = performance.now();
  const service = params.get('service') || '', operation = params.get('operation') || '';
  const slowest = Number(params.get('slowest') || 100);
  const q = new URLSearchParams({ service, operation, slowest }).toString();
  const [flame, ops] = await Promise.all([api('/api/flame?' + q), api('/api/operations?' + q)]);
  showSource(flame);
  const host = h('div', { class: 'chart-wrap', id: 'flame' });
  main.replaceChildren(
    h('h1', {}, h('span', { class: 'chip' }, h('span', { class: 'swatch', style: `background:${serviceColour(service)}` }), service), ' ', operation),
    h('div', { class: 'toolbar' }, slowestPicker(slowest, (p) => go('/endpoint', { service, operation, slowest: p })),
      h('span', {}, `${flame.traces} of ${flame.candidates} traces` + (slowest < 100 ? `, each ≥ ${fmtDur(flame.threshold_ns)}` : '') +
        ` · mean ${fmtDur(flame.traces ? flame.total_ns / flame.traces : 0)} per trace`),
      h('a', { href: '#/?' + new URLSearchParams({ route: operation }).toString() }, 'traces of this endpoint'),
      h('a', { href: '/api/flame?' + q + '&format=folded', download: 'critical-path.folded' }, 'folded stacks')),
    h('p', { class: 'note' }, 'Critical-path flame graph (CRISP): for every trace of this endpoint, only the work the request waited for; widths are time summed over the traces, top-down from the entry span (labels: mean per trace, share). A call\'s (→) own width is network + queueing, or the whole call when its server is not traced. Click a frame to zoom, the top row to zoom out.'),
    host,
    h('h2', {}, 'Operations on these critical paths (bottom-up)'),
    operationsTable(ops.operations, ops.total_ns, ops.traces));
  const chart = new Icicle(host, flame);
  pageCleanup = () => chart.destroy();
  markReady('endpoint', started, { flame: { traces: flame.traces, frames: chart.frameNames() } });
}

async function operationsPage(main, params) {
  const started = performance.now();
  const slowest = Number(params.get('slowest') || 100);
  const ops = await api('/api/operations?' + new URLSearchParams({ slowest }).toString());
  showSource(ops);
  main.replaceChildren(
    h('h1', {}, 'Operations on critical paths, across endpoints'),
    h('div', { class: 'toolbar' }, slowestPicker(slowest, (p) => go('/operations', { slowest: p })),
      h('span', {}, `${ops.traces} traces` + (slowest < 100 ? `: the slowest ${slowest}% of each endpoint` : ''))),
    h('p', { class: 'note' }, 'Bottom-up: each operation\'s own time on the critical paths of all traces in the store, whatever called it. The top rows are where making one thing faster helps the most requests.'),
    operationsTable(ops.operations, ops.total_ns, ops.traces));
  markReady('operations', started, { operations: ops.operations.map((o) => o.frame) });
}

// The aggregated flame graph: an icicle (entry frame on top), widths by summed critical time.
class Icicle {
  constructor(host, flame) {
    this.flame = flame;
    this.root = flame.root;
    this.zoom = this.root.children && this.root.children.length === 1 ? this.root.children[0] : this.root;
    assignColours(new Set(this.frameNames().map(frameService)));
    this.canvas = h('canvas', {});
    host.replaceChildren(this.canvas);
    this.host = host;
    this.resize = () => this.fit();
    window.addEventListener('resize', this.resize);
    this.bind();
    this.fit();
  }
  destroy() { window.removeEventListener('resize', this.resize); }
  frameNames() {
    const out = [];
    const walk = (n, d) => { if (d > 0) out.push(n.name); for (const c of n.children || []) walk(c, d + 1); };
    walk(this.root, 0);
    return out;
  }
  depth(n) { let d = 0; for (const c of n.children || []) d = Math.max(d, this.depth(c)); return d + 1; }
  fit() {
    const dpr = window.devicePixelRatio || 1;
    this.width = Math.max(300, this.host.clientWidth - 2);
    this.height = Math.max(120, this.depth(this.zoom) * ROW_H + 8);
    this.canvas.width = Math.round(this.width * dpr);
    this.canvas.height = Math.round(this.height * dpr);
    this.canvas.style.width = this.width + 'px';
    this.canvas.style.height = this.height + 'px';
    this.canvas.getContext('2d').setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw();
  }
  draw() {
    const g = this.canvas.getContext('2d');
    g.clearRect(0, 0, this.width, this.height);
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    this.boxes = [];
    const total = this.zoom.total_ns || 1;
    const place = (n, x, d) => {
      const w = n.total_ns / total * this.width;
      if (w < 0.3) return;
      const y = 4 + d * ROW_H;
      this.boxes.push({ n, x, y, w });
      g.fillStyle = n === this.root ? '#c9d3e6' : serviceColour(frameService(n.name));
      g.fillRect(x, y, Math.max(1, w - 1), ROW_H - 2);
      if (w > 30) {
        const label = `${n.client ? n.name.replace(': ', ' → ') : n.name}  ${fmtDur(n.total_ns / Math.max(1, this.flame.traces))}` +
          (this.zoom.total_ns ? `  ${pct(n.total_ns / this.zoom.total_ns)}` : '');
        const maxChars = Math.floor((w - 8) / 6.1);
        g.fillStyle = '#111';
        g.fillText(label.length > maxChars ? label.slice(0, Math.max(1, maxChars - 1)) + '…' : label, x + 4, y + ROW_H / 2 - 1);
      }
      let cx = x;
      for (const c of n.children || []) {
        place(c, cx, d + 1);
        cx += c.total_ns / total * this.width;
      }
    };
    place(this.zoom, 0, 0);
  }
  at(px, py) {
    for (const b of this.boxes) if (px >= b.x && px < b.x + b.w && py >= b.y && py < b.y + ROW_H) return b.n;
    return null;
  }
  bind() {
    const c = this.canvas;
    c.addEventListener('mousemove', (e) => {
      const r = c.getBoundingClientRect();
      const n = this.at(e.clientX - r.left, e.clientY - r.top);
      c.style.cursor = n ? 'pointer' : 'default';
      if (!n) { tooltip.hide(); return; }
      const traces = Math.max(1, this.flame.traces);
      const all = this.root.total_ns || 1;
      tooltip.show(`<b>${esc(n.client ? n.name.replace(': ', ' → ') : n.name)}</b>` +
        (n.client ? ' <span class="t-muted">a call: its own time is network + queueing (the whole call when its server is not traced)</span>' : '') + '<br>' +
        `on the critical path: ${fmtDur(n.total_ns)} in ${n.traces} of ${this.flame.traces} traces (${pct(n.total_ns / all)} of all)<br>` +
        `mean per trace: ${fmtDur(n.total_ns / traces)} · own time: ${fmtDur(n.self_ns / traces)} per trace`, e.clientX, e.clientY);
    });
    c.addEventListener('mouseleave', () => tooltip.hide());
    c.addEventListener('click', (e) => {
      const r = c.getBoundingClientRect();
      const n = this.at(e.clientX - r.left, e.clientY - r.top);
      if (!n) return;
      // The top row zooms back out one level; any other frame zooms in.
      if (n === this.zoom) this.zoom = this.parentOf(this.root, n) || this.root;
      else this.zoom = n;
      this.fit();
    });
  }
  parentOf(p, n) {
    for (const c of p.children || []) {
      if (c === n) return p;
      const f = this.parentOf(c, n);
      if (f) return f;
    }
    return null;
  }
}

route();
