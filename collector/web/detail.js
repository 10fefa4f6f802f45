// The host view: facts, alerts, host and per-device charts over a time window, export, zoom,
// and the window's place in the URL. The window is live (the last 15 min … 30 d, sliding), fixed
// (a custom range or a zoom) or played back (playback.js): every chart shows the same one.

import { COLORS, DASH, DETAIL_HARD_CAP, DETAIL_MAX_POINTS, DEVICE_REFRESH_MS, NICE_STEPS_S, RANGES, els, state } from './store.js';
import { getJSON, historyUrl, sendAdmin, serverNow } from './api.js';
import { BINARY_INCRS, alpha, axisSize, axisStyle, coreColor, gapThreshold, lastValue, mountChart, timeTicks, unmountChart } from './charts.js';
import { el, fmtBytes, fmtBytesShort, fmtClock, fmtDateTime, fmtDuration, fmtInt, fmtNum, fmtPct, fmtRate, fsPct, isNum, lowerBound, pct, setText } from './format.js';
import { alertText, displayName, displayStatus, hostAlerts } from './hosts.js';
import { forgetHost } from './overview.js';
import { enterPlayback, exitPlayback, playbackRange, playbackView, stopPlayback } from './playback.js';
import { markDirty, scheduleFlush } from './render.js';

// Device kinds charted one line per device, with the field each shows first; where in the
// list of charts they go is their place in DETAIL_CHARTS.
const DEVICE_CHARTS = [
  { kind: 'cpu', field: 'percent' },
  { kind: 'net', field: 'rx_bytes_per_second' },
  { kind: 'fs', field: 'used_percent' },
  { kind: 'disk', field: 'read_bytes_per_second' },
  { kind: 'sensor', field: 'celsius' },
];
export const DEVICE_KINDS = DEVICE_CHARTS.map((c) => c.kind).join(',');
const DEVICE_SERIES = 'host,' + DEVICE_KINDS;
const UNIT_KEYS = { '%': 'pct', bytes: 'bytes', 'bytes/s': 'rate', '°C': 'celsius' };

export const DETAIL_CHARTS = [
  {
    key: 'cpu', title: 'CPU', unit: 'pct',
    series: [{ label: 'CPU', field: 'cpu_percent', color: COLORS.cpu, fill: true }],
    summary: (p) => fmtPct(p.cpu_percent),
  },
  { key: 'dev-cpu', device: 'cpu' },
  {
    key: 'mem', title: 'Memory', unit: 'bytes', maxField: 'memory_total_bytes',
    series: [
      { label: 'Used', field: 'memory_used_bytes', color: COLORS.mem, fill: true },
      { label: 'Swap used', field: 'swap_used_bytes', color: COLORS.swap },
    ],
    summary: (p, h) => fmtBytes(p.memory_used_bytes) + ' / ' +
      fmtBytes(isNum(p.memory_total_bytes) ? p.memory_total_bytes : h.memory_total_bytes),
  },
  {
    key: 'net', title: 'Network', unit: 'rate',
    series: [
      { label: 'Received', field: 'net_rx_bytes_per_second', color: COLORS.rx, fill: true },
      { label: 'Sent', field: 'net_tx_bytes_per_second', color: COLORS.tx },
    ],
    summary: (p) => '↓ ' + fmtRate(p.net_rx_bytes_per_second) + '  ↑ ' + fmtRate(p.net_tx_bytes_per_second),
  },
  {
    key: 'disk', title: 'Disk I/O', unit: 'rate',
    series: [
      { label: 'Read', field: 'disk_read_bytes_per_second', color: COLORS.read, fill: true },
      { label: 'Write', field: 'disk_write_bytes_per_second', color: COLORS.write },
    ],
    summary: (p) => 'R ' + fmtRate(p.disk_read_bytes_per_second) + '  W ' + fmtRate(p.disk_write_bytes_per_second),
  },
  {
    key: 'load', title: 'Load average', unit: 'num',
    series: [
      { label: '1 min', field: 'load1', color: COLORS.load1 },
      { label: '5 min', field: 'load5', color: COLORS.load5 },
      { label: '15 min', field: 'load15', color: COLORS.load15 },
    ],
    summary: (p) => [p.load1, p.load5, p.load15].map((v) => fmtNum(v, 2)).join(' · '),
  },
  {
    key: 'temp', title: 'Temperature', unit: 'celsius', optional: true,
    series: [{ label: 'Hottest sensor', field: 'temperature_celsius', color: COLORS.temp }],
    summary: (p) => isNum(p.temperature_celsius) ? p.temperature_celsius.toFixed(1) + ' °C' : DASH,
  },
  {
    key: 'fs', title: 'Filesystem usage', unit: 'bytes', maxField: 'fs_total_bytes',
    series: [{ label: 'Used', field: 'fs_used_bytes', color: COLORS.fs, fill: true }],
    summary: (p) => {
      const q = fsPct(p);
      return fmtBytes(p.fs_used_bytes) + ' / ' + fmtBytes(p.fs_total_bytes) + (isNum(q) ? ' (' + q.toFixed(1) + ' %)' : '');
    },
  },
];

export const UNIT_FMT = {
  pct: { axis: (v) => v + '%', value: fmtPct },
  bytes: { axis: fmtBytesShort, value: fmtBytes },
  rate: { axis: (v) => fmtBytesShort(v) + '/s', value: fmtRate },
  num: { axis: (v) => String(+v.toFixed(2)), value: (v) => fmtNum(v, 2) },
  celsius: { axis: (v) => v + '°', value: (v) => (isNum(v) ? v.toFixed(1) + ' °C' : DASH) },
};

export function rangeByKey(key) {
  return RANGES.find((r) => r.key === key) || null;
}

// The step for a window: raw points when they are few enough, else the nicest bucket that keeps
// the chart under DETAIL_MAX_POINTS; a minute or more is a whole number of minutes, so the
// collector answers from its rollups.
// Raw samples are kept this long (the collector's default --retention-raw): a window that starts
// before it is asked for in whole minutes, which the rollups answer.
const RAW_RETENTION_MS = 24 * 60 * 60 * 1000;

export function stepFor(rangeMs, host, fromMs) {
  const interval = host && isNum(host.interval_ms) && host.interval_ms > 0 ? host.interval_ms : 1000;
  const wanted = rangeMs / DETAIL_MAX_POINTS;
  const old = isNum(fromMs) && fromMs < serverNow() - RAW_RETENTION_MS;
  if (wanted <= interval && !old) return null;
  for (const s of NICE_STEPS_S) if (s * 1000 >= wanted && (!old || s % 60 === 0)) return s * 1000;
  return Math.ceil(wanted / 3600000) * 3600000;
}

// ---------------------------------------------------------------------------------------------
// The window and the URL

// [from, to] of a window; a live one ends now.
export function windowRange(win) {
  if (win.kind === 'fixed') return [win.from, win.to];
  const to = serverNow();
  return [to - rangeByKey(win.key).ms, to];
}

// What the charts show now: the played-back moment, or the window.
export function shownRange() {
  const d = state.detail;
  if (!d) return [0, 1];
  const played = playbackRange();
  if (played) return played;
  if (d.win.kind === 'live') {
    const last = d.points.length ? d.points[d.points.length - 1].ts : 0;
    const to = Math.max(serverNow(), last);
    return [to - rangeByKey(d.win.key).ms, to];
  }
  return [d.win.from, d.win.to];
}

export function openHost(id) {
  state.returnFocus = id;
  state.pushedDetail = true;
  location.hash = 'host=' + encodeURIComponent(id);
}

// The host view's window from the URL: `range=KEY`, or `from=MS&to=MS`.
export function parseHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const from = Number(params.get('from'));
  const to = Number(params.get('to'));
  let win = null;
  if (params.has('from') && params.has('to') && Number.isFinite(from) && Number.isFinite(to) && to > from) {
    win = { kind: 'fixed', from, to };
  } else if (rangeByKey(params.get('range'))) {
    win = { kind: 'live', key: params.get('range') };
  } else {
    win = { kind: 'live', key: '15m' };
  }
  return { host: params.get('host'), win };
}

function hashFor(d) {
  let hash = '#host=' + encodeURIComponent(d.id);
  if (d.win.kind === 'fixed') hash += '&from=' + Math.round(d.win.from) + '&to=' + Math.round(d.win.to);
  else if (d.win.key !== '15m') hash += '&range=' + d.win.key;
  return hash;
}

export function route() {
  const { host, win } = parseHash();
  if (host) openDetail(host, win);
  else closeDetail();
}

export function goBack() {
  if (state.pushedDetail && history.length > 1) {
    state.pushedDetail = false;
    history.back();
  } else {
    history.pushState(null, '', location.pathname + location.search);
    route();
  }
}

function sameWindow(a, b) {
  return a.kind === b.kind && (a.kind === 'live' ? a.key === b.key : a.from === b.from && a.to === b.to);
}

export function openDetail(id, win) {
  if (state.detail && state.detail.id === id) {
    if (win && !sameWindow(win, state.detail.win)) setWindow(win, { url: false });
    return;
  }
  if (state.detail) destroyDetail();
  state.detail = {
    id,
    win: win || { kind: 'live', key: '15m' },
    zoomStack: [], // windows before each zoom, for "Zoom out"
    step: null,
    from: 0,
    to: 0,
    points: [],
    devices: {},
    deviceFields: {}, // kind -> the field its chart shows
    panels: new Map(),
    token: 0,
    dirty: false,
    recentAlerts: [],
    deviceTimer: null,
  };
  els.overview.hidden = true;
  els.detail.hidden = false;
  els.detailMessage.hidden = true;
  buildRangeButtons();
  buildPanels();
  renderWindowControls();
  renderDetailHeader();
  els.detailTitle.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  loadDetail();
  loadRecentAlerts();
}

// Rebuilds the charts (the table of metrics arrived after the view opened).
export function rebuildDetail() {
  const d = state.detail;
  if (!d) return;
  for (const panel of d.panels.values()) unmountChart(panel.box, panel.u);
  buildPanels();
  d.dirty = true;
  scheduleFlush();
}

export function closeDetail() {
  state.pushedDetail = false;
  if (!state.detail) return;
  destroyDetail();
  els.detail.hidden = true;
  els.overview.hidden = false;
  document.title = 'hostwatch';
  // Cards whose charts were not drawn while hidden are redrawn now.
  for (const card of state.cards.values()) {
    if (card.visible) card.chartDirty = true;
  }
  for (const id of state.hosts.keys()) markDirty(id);
  const card = state.returnFocus && state.cards.get(state.returnFocus);
  if (card && card.el.isConnected) card.el.focus();
  else els.main.focus({ preventScroll: true });
}

export function destroyDetail() {
  const d = state.detail;
  if (!d) return;
  d.token++;
  stopPlayback();
  clearTimeout(d.deviceTimer);
  for (const panel of d.panels.values()) unmountChart(panel.box, panel.u);
  els.detailCharts.textContent = '';
  els.facts.textContent = '';
  els.playback.hidden = true;
  state.detail = null;
}

export function buildRangeButtons() {
  els.range.textContent = '';
  for (const r of RANGES) {
    const b = el('button', { type: 'button', class: 'btn seg', 'data-range': r.key }, r.label);
    b.addEventListener('click', () => setWindow({ kind: 'live', key: r.key }, { url: true }));
    els.range.append(b);
  }
}

// Shows another window: updates the URL (a bookmark or a shared link opens the same view) and
// reloads the charts. `zoom`: remember the window before, for "Zoom out".
export function setWindow(win, opts) {
  const d = state.detail;
  if (!d) return;
  if (opts && opts.zoom) d.zoomStack.push(d.win);
  else if (!opts || !opts.keepZoom) d.zoomStack = [];
  if (playbackView()) exitPlayback(false);
  d.win = win;
  if (!opts || opts.url !== false) history.replaceState(null, '', hashFor(d));
  renderWindowControls();
  loadDetail();
}

export function zoomOut() {
  const d = state.detail;
  if (!d || !d.zoomStack.length) return;
  setWindow(d.zoomStack.pop(), { url: true, keepZoom: true });
}

// A date for a datetime-local input, in the browser's time zone.
function localInput(ms) {
  const t = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return t.getFullYear() + '-' + pad(t.getMonth() + 1) + '-' + pad(t.getDate()) + 'T' + pad(t.getHours()) + ':' +
    pad(t.getMinutes()) + ':' + pad(t.getSeconds());
}

function renderWindowControls() {
  const d = state.detail;
  for (const b of els.range.querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(d.win.kind === 'live' && b.dataset.range === d.win.key));
  }
  // The From/To fields show a window when it is chosen, and are then left to the operator
  // (a live window's ends move on; the fields do not, so they can be edited).
  if (d.inputsFor !== d.win) {
    d.inputsFor = d.win;
    const [from, to] = windowRange(d.win);
    els.customFrom.value = localInput(from);
    els.customTo.value = localInput(to);
  }
  els.customRange.dataset.active = String(d.win.kind === 'fixed');
  els.zoomOut.hidden = d.zoomStack.length === 0;
}

export function bindDetailControls() {
  els.customRange.addEventListener('submit', (e) => {
    e.preventDefault();
    const from = new Date(els.customFrom.value).getTime();
    const to = new Date(els.customTo.value).getTime();
    if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
      els.detailMessage.hidden = false;
      setText(els.detailMessage, 'The custom range needs a start before its end.');
      return;
    }
    els.detailMessage.hidden = true;
    setWindow({ kind: 'fixed', from, to }, { url: true });
  });
  els.zoomOut.addEventListener('click', zoomOut);
  els.play.addEventListener('click', () => enterPlayback(true));
  els.removeHost.addEventListener('click', openRemoveDialog);
  els.removeForm.addEventListener('submit', submitRemove);
}

export function buildPanels() {
  const d = state.detail;
  els.detailCharts.textContent = '';
  d.panels = new Map();
  // Device charts come from the collector's table of metrics: its label and fields per kind.
  const device = (kind) => {
    const c = DEVICE_CHARTS.find((x) => x.kind === kind);
    const table = state.series && Array.isArray(state.series.devices) ? state.series.devices.find((t) => t.kind === kind) : null;
    if (!c || !table || !Array.isArray(table.fields) || !table.fields.length) return null;
    if (!d.deviceFields[kind]) d.deviceFields[kind] = table.fields.some((f) => f.name === c.field) ? c.field : table.fields[0].name;
    return { key: 'dev-' + kind, title: table.label || kind, device: kind, fields: table.fields, optional: true };
  };
  const placed = new Set(DETAIL_CHARTS.filter((def) => def.device).map((def) => def.device));
  const defs = DETAIL_CHARTS.map((def) => (def.device ? device(def.device) : def))
    .concat(DEVICE_CHARTS.filter((c) => !placed.has(c.kind)).map((c) => device(c.kind)))
    .filter(Boolean);
  for (const def of defs) {
    const panel = el('section', { class: 'chart-panel', 'data-chart': def.key });
    const titleId = 'chart-title-' + def.key;
    const head = el('div', { class: 'chart-head' });
    head.append(el('h3', { id: titleId }, def.title));
    let select = null;
    if (def.device && def.fields.length > 1) {
      // Which of the kind's fields the chart shows, from the collector's table of metrics.
      select = el('select', { class: 'field-select', 'aria-label': def.title + ': series shown' });
      for (const f of def.fields) {
        const o = el('option', { value: f.name }, f.label + (f.unit ? ' (' + f.unit + ')' : ''));
        o.selected = f.name === d.deviceFields[def.device];
        select.append(o);
      }
      select.addEventListener('change', () => {
        d.deviceFields[def.device] = select.value;
        const p = d.panels.get(def.key);
        unmountChart(p.box, p.u);
        p.u = null;
        p.names = '';
        d.dirty = true;
        scheduleFlush();
      });
      head.append(select);
    }
    head.append(el('span', { class: 'chart-value' }, DASH));
    const box = el('div', { class: 'chart-box', role: 'img', 'aria-labelledby': titleId });
    panel.append(head, box);
    if (def.optional) panel.hidden = true;
    els.detailCharts.append(panel);
    d.panels.set(def.key, { def, el: panel, box, value: head.lastChild, u: null, names: '' });
  }
}

// Loads the window's history (host totals and devices) at the step that fits it.
export function loadDetail() {
  const d = state.detail;
  if (!d) return;
  const token = ++d.token;
  const host = state.hosts.get(d.id);
  const [from, to] = windowRange(d.win);
  const stepBefore = d.step;
  d.step = stepFor(to - from, host, from);
  d.from = from;
  d.to = to;
  d.loading = true;
  clearTimeout(d.deviceTimer);
  updateExportLinks();
  els.detail.setAttribute('aria-busy', 'true');
  const live = d.win.kind === 'live';
  getJSON(historyUrl(d.id, from, live ? null : to, d.step, null, DEVICE_SERIES), 20000).then((res) => {
    if (state.detail !== d || token !== d.token) return;
    const fresh = (Array.isArray(res.points) ? res.points : []).filter((p) => p && isNum(p.ts));
    const last = fresh.length ? fresh[fresh.length - 1].ts : -Infinity;
    // Live points that arrived during the request are kept (if they are points of this step).
    if (live && d.step === stepBefore) for (const p of d.points) if (p.ts > last && p.live) fresh.push(p);
    d.points = fresh;
    d.devices = res.devices && typeof res.devices === 'object' ? res.devices : {};
    state.lastHistory = { from, to, step: res.step === undefined ? d.step : res.step, points: fresh.length };
    d.loading = false;
    els.detailMessage.hidden = true;
    d.dirty = true;
    renderDetail();
    if (live) d.deviceTimer = setTimeout(() => refreshDevices(d, token), DEVICE_REFRESH_MS);
  }).catch((err) => {
    if (state.detail !== d || token !== d.token) return;
    d.loading = false;
    els.detailMessage.hidden = false;
    setText(els.detailMessage, err.status === 404
      ? 'Unknown host “' + d.id + '”.'
      : 'Cannot load history: ' + (err.message || err) + '.');
    d.dirty = true;
    renderDetail();
  }).finally(() => {
    if (state.detail === d && token === d.token) els.detail.removeAttribute('aria-busy');
  });
}

// Live samples carry host totals only: the device charts of a live window catch up by asking
// for what is newer than their newest point now and then.
function refreshDevices(d, token) {
  if (state.detail !== d || token !== d.token || state.paused) {
    if (state.detail === d && token === d.token) d.deviceTimer = setTimeout(() => refreshDevices(d, token), DEVICE_REFRESH_MS);
    return;
  }
  // From the oldest "newest point" of the kinds refreshed (per-core values come live, so they
  // do not count), so no kind is left with a gap.
  let newest = Infinity;
  for (const [kind, byName] of Object.entries(d.devices)) {
    if (kind === 'cpu') continue;
    let kindNewest = d.from;
    for (const pts of Object.values(byName)) if (pts.length) kindNewest = Math.max(kindNewest, pts[pts.length - 1].ts);
    newest = Math.min(newest, kindNewest);
  }
  if (newest === Infinity) newest = d.from;
  // A bucket still filling is asked for again, so it ends up complete.
  const from = d.step ? Math.floor(newest / d.step) * d.step : newest + 1;
  getJSON(historyUrl(d.id, from, null, d.step, null, DEVICE_KINDS), 20000).then((res) => {
    if (state.detail !== d || token !== d.token) return;
    for (const [kind, byName] of Object.entries(res.devices || {})) {
      const into = d.devices[kind] || (d.devices[kind] = {});
      for (const [name, pts] of Object.entries(byName)) {
        const have = into[name] || (into[name] = []);
        const start = lowerBound(have, from, (p) => p.ts);
        have.splice(start, have.length - start, ...pts.filter((p) => p && isNum(p.ts)));
      }
    }
    d.dirty = true;
    scheduleFlush();
  }).catch(() => { /* the next refresh tries again */ }).finally(() => {
    if (state.detail === d && token === d.token) d.deviceTimer = setTimeout(() => refreshDevices(d, token), DEVICE_REFRESH_MS);
  });
}

// Export links: exactly the window shown, zoomed or played back included.
export function updateExportLinks() {
  const d = state.detail;
  if (!d) return;
  const host = state.hosts.get(d.id);
  const view = playbackView();
  // The window shown, to the second (a live window's ends move on as it is shown).
  const [from, to] = (view ? view.range : shownRange()).map((t) => Math.floor(t / 1000) * 1000);
  const step = view ? view.step : d.step;
  const label = d.win.kind === 'live' && !view ? d.win.key : new Date(from).toISOString().replace(/[:.]/g, '-');
  const name = ((host && host.hostname) || d.id).replace(/[^\w.-]+/g, '_') + '-' + label;
  const csv = historyUrl(d.id, from, to, step, 'csv');
  if (els.exportCsv.getAttribute('href') !== csv) {
    els.exportCsv.href = csv;
    els.exportJson.href = historyUrl(d.id, from, to, step, 'json');
  }
  els.exportCsv.setAttribute('download', name + '.csv');
  els.exportCsv.setAttribute('aria-label', 'Export the window shown as CSV');
  els.exportJson.setAttribute('download', name + '.json');
  els.exportJson.setAttribute('aria-label', 'Export the window shown as JSON');
}

export function detailAppend(ev) {
  const d = state.detail;
  if (!d || d.win.kind !== 'live') return;
  const n = d.points.length;
  const last = n ? d.points[n - 1] : null;
  if (!d.step) {
    const p = Object.assign({ live: true }, ev);
    appendLiveCores(d, ev);
    if (!last || ev.ts > last.ts) {
      d.points.push(p);
    } else {
      // An older sample (an agent replaying after an outage): insert it in place.
      const i = lowerBound(d.points, ev.ts, (q) => q.ts);
      if (i < n && d.points[i].ts === ev.ts) return;
      d.points.splice(i, 0, p);
    }
  } else {
    if (last && ev.ts <= last.ts) return;
    const bucket = Math.floor(ev.ts / d.step) * d.step;
    const lastBucket = last ? Math.floor(last.ts / d.step) * d.step : null;
    if (last && lastBucket === bucket) {
      if (last.live) mergeBucket(last, ev);
      // else: the collector's own (partial) bucket stays as it is
    } else {
      const p = Object.assign({}, ev, { ts: bucket, live: true, n: 1 });
      if (last && bucket <= last.ts) return;
      d.points.push(p);
    }
  }
  if (d.points.length > DETAIL_HARD_CAP) d.points.splice(0, d.points.length - DETAIL_HARD_CAP);
  d.dirty = true;
  scheduleFlush();
}

// A live sample's per-core values (the only device values live samples carry) go to the
// per-core chart at once; the other device charts catch up by refreshDevices.
function appendLiveCores(d, ev) {
  if (!Array.isArray(ev.cpu_cores_percent)) return;
  const cpu = d.devices.cpu || (d.devices.cpu = {});
  ev.cpu_cores_percent.forEach((percent, i) => {
    const pts = cpu['cpu' + i] || (cpu['cpu' + i] = []);
    if (!pts.length || pts[pts.length - 1].ts < ev.ts) pts.push({ ts: ev.ts, percent });
  });
}

// Running average of a live bucket (ranges with a step).
export function mergeBucket(p, ev) {
  const n = p.n || 1;
  for (const [k, v] of Object.entries(ev)) {
    if (k === 'ts' || k === 'id' || k === 'type' || k === 'host' || k === 'hostname') continue;
    if (isNum(v) && isNum(p[k])) p[k] = (p[k] * n + v) / (n + 1);
    else if (Array.isArray(v) && Array.isArray(p[k]) && v.length === p[k].length) {
      p[k] = p[k].map((x, i) => (isNum(x) && isNum(v[i]) ? (x * n + v[i]) / (n + 1) : v[i]));
    } else p[k] = v;
  }
  p.n = n + 1;
}

// ---------------------------------------------------------------------------------------------
// Header: facts, alerts, remove

export function renderDetailHeader() {
  const d = state.detail;
  if (!d) return;
  const host = state.hosts.get(d.id);
  const name = host ? displayName(host) : d.id;
  setText(els.detailTitle, name);
  document.title = name + ' · hostwatch';
  const status = host ? displayStatus(host) : state.hostsLoaded ? 'unknown' : '';
  setText(els.detailStatus, status);
  els.detailStatus.dataset.status = status;
  els.detailStatus.hidden = !status;
  // Only an offline host can be removed (an agent still connected would bring it back).
  els.removeHost.hidden = !host || status !== 'offline';
  renderHostAlerts(d, host);
  if (!host) {
    els.facts.textContent = '';
    d.factKeys = '';
    if (state.hostsLoaded && !d.loading && !d.points.length) {
      els.detailMessage.hidden = false;
      setText(els.detailMessage, 'Unknown host “' + d.id + '”: it may have been removed.');
    }
    return;
  }
  const p = host.latest || {};
  const facts = [
    ['OS', host.os],
    ['Kernel', host.kernel],
    ['Arch', host.arch],
    ['CPU', [host.cpu_model, isNum(host.cpu_cores) ? host.cpu_cores + ' cores' : null].filter(Boolean).join(' · ')],
    ['Memory', fmtBytes(isNum(p.memory_total_bytes) ? p.memory_total_bytes : host.memory_total_bytes)],
    ['Swap', !isNum(p.swap_total_bytes) ? null : p.swap_total_bytes === 0 ? 'none'
      : fmtBytes(p.swap_used_bytes) + ' / ' + fmtBytes(p.swap_total_bytes)],
    ['Uptime', isNum(p.uptime_seconds) ? fmtDuration(p.uptime_seconds) : null],
    ['Processes', isNum(p.processes) ? fmtInt(p.processes) : null],
    ['Connected since', host.connected_since ? fmtDateTime(host.connected_since) : host.status === 'offline' ? 'not connected' : null],
    ['Last seen', isNum(host.last_seen) ? fmtDateTime(host.last_seen) : 'never'],
    ['Agent', [host.agent_version ? 'v' + host.agent_version : null, isNum(host.interval_ms) ? 'every ' + (host.interval_ms / 1000) + ' s' : null].filter(Boolean).join(' · ')],
    ['Dropped samples', isNum(host.dropped_samples) && host.dropped_samples > 0 ? fmtInt(host.dropped_samples) : null],
    ['Host id', host.id],
  ];
  const shown = facts.filter(([, v]) => v !== null && v !== undefined && v !== '');
  const keys = shown.map(([k]) => k).join('|');
  if (d.factKeys === keys) {
    // Same facts as before: update the values in place (keeps any text selection).
    const dds = els.facts.querySelectorAll('dd');
    shown.forEach(([, v], i) => setText(dds[i], String(v)));
    return;
  }
  d.factKeys = keys;
  const frag = document.createDocumentFragment();
  for (const [k, v] of shown) {
    const div = el('div');
    div.append(el('dt', null, k), el('dd', k === 'Host id' ? { class: 'mono' } : null, String(v)));
    frag.append(div);
  }
  els.facts.textContent = '';
  els.facts.append(frag);
}

function alertItem(text, when, kind) {
  const li = el('li', { class: 'alert-item', 'data-kind': kind });
  li.append(el('span', { class: 'alert-text' }, text), el('span', { class: 'muted' }, ' ' + when));
  return li;
}

function renderHostAlerts(d, host) {
  const firing = host ? hostAlerts(host.id) : [];
  const key = JSON.stringify([firing.map((a) => [alertText(a), a.since]), d.recentAlerts.map((a) => a.id)]);
  if (d.alertsKey === key) return;
  d.alertsKey = key;
  els.hostAlertsFiring.textContent = '';
  for (const a of firing) {
    els.hostAlertsFiring.append(alertItem(alertText(a), isNum(a.since) ? 'since ' + fmtDateTime(a.since) : '', 'firing'));
  }
  els.hostAlertsRecent.textContent = '';
  for (const a of d.recentAlerts) {
    const resolved = a.state === 'resolved' || /resolved/.test(a.type || '');
    els.hostAlertsRecent.append(alertItem((a.summary || a.rule || 'alert') + (resolved ? ' resolved' : ' firing'),
      isNum(a.ts) ? fmtDateTime(a.ts) : '', resolved ? 'resolved' : 'firing'));
  }
  els.hostAlerts.hidden = firing.length === 0 && d.recentAlerts.length === 0;
  els.hostAlerts.dataset.firing = String(firing.length);
}

// The host's recent alert history, from the activity log.
export async function loadRecentAlerts() {
  const d = state.detail;
  if (!d) return;
  try {
    const res = await getJSON('api/activity?types=alert&limit=20&host=' + encodeURIComponent(d.id));
    if (state.detail !== d) return;
    const events = Array.isArray(res.events) ? res.events : [];
    d.recentAlerts = events.filter((e) => e && e.host === d.id && String(e.type || '').startsWith('alert')).slice(0, 20);
    d.alertsKey = null;
    renderHostAlerts(d, state.hosts.get(d.id));
  } catch (_) { /* firing alerts still show */ }
}

const ADMIN_KEY = 'hostwatch.admin';

function openRemoveDialog() {
  const d = state.detail;
  const host = d && state.hosts.get(d.id);
  if (!host) return;
  setText(els.removeName, displayName(host));
  els.removeError.hidden = true;
  try {
    els.removeToken.value = window.sessionStorage.getItem(ADMIN_KEY) || '';
  } catch (_) { /* private mode */ }
  els.removeDialog.showModal();
  els.removeToken.focus();
}

// DELETE /api/hosts/{id} with the admin token; the host leaves the page when the collector
// confirms (its host_removed event does the same in every other open page).
async function submitRemove(e) {
  e.preventDefault();
  const d = state.detail;
  if (!d || (e.submitter && e.submitter.value === 'cancel')) {
    els.removeDialog.close();
    return;
  }
  const token = els.removeToken.value.trim();
  if (!token) return;
  const id = d.id;
  const show = (msg) => {
    els.removeError.hidden = false;
    setText(els.removeError, msg);
  };
  try {
    const res = await sendAdmin('DELETE', 'api/hosts/' + encodeURIComponent(id), token);
    if (res.status === 202 || res.status === 200 || res.status === 204) {
      try {
        window.sessionStorage.setItem(ADMIN_KEY, token);
      } catch (_) { /* private mode */ }
      els.removeDialog.close();
      forgetHost(id);
      goBack();
      return;
    }
    const why = res.body && res.body.error ? res.body.error : 'HTTP ' + res.status;
    show(res.status === 401 ? 'Wrong admin token (' + why + ').' : 'Not removed: ' + why + '.');
  } catch (err) {
    show('Not removed: ' + (err.message || err) + '.');
  }
}

// ---------------------------------------------------------------------------------------------
// Charts

function unitOf(field) {
  return UNIT_KEYS[field.unit] || 'num';
}

// One chart's data for the points shown: x with a null point at every gap, and its columns.
function hostColumns(pts, gap, seriesDefs) {
  const xs = [];
  const index = [];
  for (let i = 0; i < pts.length; i++) {
    if (i > 0 && pts[i].ts - pts[i - 1].ts > gap) {
      xs.push(pts[i - 1].ts + 1);
      index.push(null);
    }
    xs.push(pts[i].ts);
    index.push(pts[i]);
  }
  const cols = seriesDefs.map((s) => index.map((p) => {
    if (!p) return null;
    const v = p[s.field];
    return isNum(v) ? v : null;
  }));
  return [xs, cols];
}

// A device chart's data: one line per device, on the union of their timestamps (devices of a
// host share its samples' times), null where a device was not there or between gaps.
function deviceColumns(byName, names, field, gap, range) {
  const all = new Set();
  for (const n of names) for (const p of byName[n]) if (p.ts >= range[0] - gap && p.ts <= range[1]) all.add(p.ts);
  const ts = Array.from(all).sort((a, b) => a - b);
  const xs = [];
  const slot = new Map();
  for (let i = 0; i < ts.length; i++) {
    if (i > 0 && ts[i] - ts[i - 1] > gap) xs.push(ts[i - 1] + 1);
    slot.set(ts[i], xs.length);
    xs.push(ts[i]);
  }
  const cols = names.map((n) => {
    const col = new Array(xs.length).fill(null);
    for (const p of byName[n]) {
      const i = slot.get(p.ts);
      if (i !== undefined && isNum(p[field])) col[i] = p[field];
    }
    return col;
  });
  return [xs, cols];
}

export function renderDetail() {
  const d = state.detail;
  if (!d) return;
  d.dirty = false;
  renderDetailHeader();
  renderWindowControls();
  const host = state.hosts.get(d.id);
  const view = playbackView();
  const range = shownRange();
  let pts;
  let devices;
  let step;
  if (view) {
    ({ points: pts, devices, step } = view);
  } else {
    // Drop what slid out of a live range.
    if (d.win.kind === 'live') {
      const cutoff = range[0] - (d.step || 0);
      let drop = 0;
      while (drop < d.points.length && d.points[drop].ts < cutoff) drop++;
      if (drop) d.points.splice(0, drop);
      for (const byName of Object.values(d.devices)) {
        for (const [name, list] of Object.entries(byName)) {
          const keep = Math.max(lowerBound(list, cutoff, (p) => p.ts), list.length - DETAIL_HARD_CAP);
          if (keep > 0) list.splice(0, keep);
          if (!list.length) delete byName[name];
        }
      }
    }
    pts = d.points;
    devices = d.devices;
    step = d.step;
  }
  updateExportLinks();
  const gap = gapThreshold(host, step);
  const latest = view ? (pts.length ? pts[pts.length - 1] : {}) : (host && host.latest) || (pts.length ? pts[pts.length - 1] : {});

  for (const panel of d.panels.values()) {
    const def = panel.def;
    let seriesDefs = def.series;
    let xs;
    let cols;
    let unit = def.unit;
    if (def.device) {
      const byName = devices[def.device] || {};
      const names = Object.keys(byName).filter((n) => Array.isArray(byName[n]) && byName[n].length).sort();
      const field = def.fields.find((f) => f.name === d.deviceFields[def.device]) || def.fields[0];
      unit = unitOf(field);
      panel.el.hidden = names.length === 0;
      if (!names.length) continue;
      seriesDefs = names.map((n, i) => ({ label: n, color: coreColor(i, names.length) }));
      [xs, cols] = deviceColumns(byName, names, field.name, gap, range);
      const newest = cols.map(lastValue);
      setText(panel.value, def.device === 'fs' ? fsTrend(byName, names, range)
        : names.length === 1 ? UNIT_FMT[unit].value(newest[0]) : names.length + ' devices');
      const key = names.join('\u0000') + '|' + field.name;
      if (panel.u && panel.names !== key) {
        unmountChart(panel.box, panel.u);
        panel.u = null;
      }
      panel.names = key;
      panel.unit = unit;
    } else {
      setText(panel.value, host || view ? def.summary(latest, host || {}) : DASH);
      [xs, cols] = hostColumns(pts, gap, seriesDefs);
      if (def.optional) {
        const has = cols.some((c) => c.some(isNum)) || seriesDefs.some((s) => isNum(latest[s.field]));
        panel.el.hidden = !has;
        if (!has) continue;
      }
      if (def.maxField) {
        let max = 0;
        for (const p of pts) if (isNum(p[def.maxField])) max = Math.max(max, p[def.maxField]);
        if (isNum(latest[def.maxField])) max = Math.max(max, latest[def.maxField]);
        if (!max && def.maxField === 'memory_total_bytes' && host && isNum(host.memory_total_bytes)) max = host.memory_total_bytes;
        panel.max = max;
      }
    }
    const data = [xs].concat(cols);
    if (!panel.u) {
      if (panel.box.clientWidth === 0) continue;
      panel.u = mountChart(panel.box, detailOptions(panel, seriesDefs, unit), data);
    } else {
      panel.u.setData(data);
    }
  }
}

// The mount filling up fastest in the window shown: its use, growth, and when it would be full
// at that rate ("/var 91 % · +1.2 GiB/h · full in 7h").
function fsTrend(byName, names, range) {
  let best = null;
  for (const name of names) {
    const pts = byName[name].filter((p) => p.ts >= range[0] && p.ts <= range[1] && isNum(p.used_bytes));
    if (!pts.length) continue;
    const first = pts[0];
    const last = pts[pts.length - 1];
    const rate = last.ts > first.ts ? (last.used_bytes - first.used_bytes) / (last.ts - first.ts) : 0; // bytes/ms
    const percent = isNum(last.used_percent) ? last.used_percent : 0;
    const fullIn = rate > 0 && isNum(last.available_bytes) ? last.available_bytes / rate / 1000 : null; // s
    const score = fullIn !== null ? -fullIn : percent - 1e9;
    if (!best || score > best.score) best = { name, percent, rate, fullIn, score };
  }
  if (!best) return DASH;
  const parts = [best.name + ' ' + fmtPct(best.percent)];
  if (best.rate) parts.push((best.rate > 0 ? '+' : '−') + fmtBytes(Math.abs(best.rate) * 3600000) + '/h');
  if (best.fullIn !== null) parts.push('full in ' + fmtDuration(best.fullIn));
  return parts.join(' · ');
}

// Drag on a chart: zoom every chart to the selected span (remembered for "Zoom out").
function onSelect(u) {
  const width = u.select.width;
  if (width < 4) return;
  const from = Math.round(u.posToVal(u.select.left, 'x'));
  const to = Math.round(u.posToVal(u.select.left + width, 'x'));
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  // Charts with the same cursor sync all report the one drag: the first sets the window.
  const d = state.detail;
  if (!d || playbackView() || to - from < 1000) return;
  if (d.win.kind === 'fixed' && Math.abs(d.win.from - from) < 2 && Math.abs(d.win.to - to) < 2) return;
  setWindow({ kind: 'fixed', from, to }, { url: true, zoom: true });
}

export function detailOptions(panel, seriesDefs, unit) {
  const def = panel.def;
  unit = unit || def.unit;
  const fmt = UNIT_FMT[unit];
  let yRange;
  if (unit === 'pct') yRange = [0, 100];
  else if (def.maxField) yRange = (u, min, max) => [0, Math.max(max || 0, panel.max || 0) || 1];
  else if (unit === 'celsius') yRange = (u, min, max) => [Math.min(min ?? 0, 20), Math.max(max ?? 0, 40) + 5];
  else yRange = (u, min, max) => [0, Math.max(isNum(max) ? max * 1.1 : 0, unit === 'num' ? 1 : 1024)];
  return {
    height: 170,
    legend: { show: seriesDefs.length <= 8, live: true },
    cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: 'hostwatch-detail' }, points: { size: 5 } },
    select: { show: true },
    hooks: { setSelect: [onSelect] },
    scales: { x: { time: true, range: () => shownRange() }, y: { range: yRange } },
    axes: [
      axisStyle({ space: 64, size: 28, values: (u, splits) => timeTicks(u, splits) }),
      axisStyle({
        size: axisSize,
        incrs: unit === 'bytes' || unit === 'rate' ? BINARY_INCRS : undefined,
        values: (u, splits) => splits.map(fmt.axis),
      }),
    ],
    // Without a cursor on the chart the legend shows the newest values.
    series: [{
      label: 'Time',
      value: (u, v, si, idx) => (idx === null ? 'latest' : isNum(v) ? fmtClock(v) : DASH),
    }].concat(seriesDefs.map((s) => ({
      label: s.label,
      stroke: s.color,
      width: seriesDefs.length > 8 ? 1 : 1.5,
      fill: s.fill ? alpha(s.color, 0.14) : undefined,
      points: { show: false },
      value: (u, v, si, idx) => fmt.value(idx === null ? lastValue(u.data[si]) : v),
    }))),
  };
}
