// The host view: facts, charts over a time window, export.

import { COLORS, DASH, DETAIL_HARD_CAP, DETAIL_MAX_POINTS, NICE_STEPS_S, RANGES, els, state } from './store.js';
import { getJSON, historyUrl, serverNow } from './api.js';
import { BINARY_INCRS, alpha, axisSize, axisStyle, coreColor, gapThreshold, lastValue, mountChart, timeTicks, unmountChart } from './charts.js';
import { el, fmtBytes, fmtBytesShort, fmtClock, fmtDateTime, fmtDuration, fmtInt, fmtNum, fmtPct, fmtRate, fsPct, isNum, lowerBound, pct, setText } from './format.js';
import { markDirty, scheduleFlush } from './render.js';

// Host detail

export const DETAIL_CHARTS = [
  {
    key: 'cpu', title: 'CPU', unit: 'pct',
    series: [{ label: 'CPU', field: 'cpu_percent', color: COLORS.cpu, fill: true }],
    summary: (p) => fmtPct(p.cpu_percent),
  },
  {
    key: 'cores', title: 'CPU per core', unit: 'pct', cores: true,
    summary: (p) => Array.isArray(p.cpu_cores_percent) ? p.cpu_cores_percent.length + ' cores' : DASH,
  },
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
  return RANGES.find((r) => r.key === key) || RANGES[0];
}

export function stepFor(rangeMs, host) {
  const interval = host && isNum(host.interval_ms) && host.interval_ms > 0 ? host.interval_ms : 1000;
  const wanted = rangeMs / DETAIL_MAX_POINTS;
  if (wanted <= interval) return null; // raw points are few enough
  for (const s of NICE_STEPS_S) if (s * 1000 >= wanted) return s * 1000;
  return Math.ceil(wanted / 1000) * 1000;
}

export function openHost(id) {
  state.returnFocus = id;
  state.pushedDetail = true;
  location.hash = 'host=' + encodeURIComponent(id);
}

export function parseHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  return { host: params.get('host'), range: params.get('range') };
}

export function route() {
  const { host, range } = parseHash();
  if (host) openDetail(host, range);
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

export function openDetail(id, rangeKey) {
  const range = rangeByKey(rangeKey || (state.detail && state.detail.id === id ? state.detail.range.key : '15m'));
  if (state.detail && state.detail.id === id) {
    if (state.detail.range.key !== range.key) setRange(range.key, false);
    return;
  }
  if (state.detail) destroyDetail();
  state.detail = {
    id,
    range,
    step: null,
    from: 0,
    to: 0,
    points: [],
    panels: new Map(),
    token: 0,
    dirty: false,
  };
  els.overview.hidden = true;
  els.detail.hidden = false;
  els.detailMessage.hidden = true;
  buildRangeButtons();
  buildPanels();
  renderDetailHeader();
  els.detailTitle.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  loadDetail();
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
    if (card.visible) markDirty(card.id);
  }
  const card = state.returnFocus && state.cards.get(state.returnFocus);
  if (card && card.el.isConnected) card.el.focus();
  else els.main.focus({ preventScroll: true });
}

export function destroyDetail() {
  const d = state.detail;
  if (!d) return;
  d.token++;
  for (const panel of d.panels.values()) unmountChart(panel.box, panel.u);
  els.detailCharts.textContent = '';
  els.facts.textContent = '';
  state.detail = null;
}

export function buildRangeButtons() {
  els.range.textContent = '';
  for (const r of RANGES) {
    const b = el('button', { type: 'button', class: 'btn seg', 'data-range': r.key }, r.label);
    b.setAttribute('aria-pressed', String(state.detail.range.key === r.key));
    b.addEventListener('click', () => setRange(r.key, true));
    els.range.append(b);
  }
}

export function setRange(key, updateUrl) {
  const d = state.detail;
  if (!d) return;
  d.range = rangeByKey(key);
  for (const b of els.range.querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === d.range.key));
  }
  if (updateUrl) {
    const hash = '#host=' + encodeURIComponent(d.id) + (d.range.key !== '15m' ? '&range=' + d.range.key : '');
    history.replaceState(null, '', hash);
  }
  loadDetail();
}

export function buildPanels() {
  const d = state.detail;
  els.detailCharts.textContent = '';
  for (const def of DETAIL_CHARTS) {
    const panel = el('section', { class: 'chart-panel', 'data-chart': def.key });
    const titleId = 'chart-title-' + def.key;
    const head = el('div', { class: 'chart-head' });
    head.append(el('h3', { id: titleId }, def.title), el('span', { class: 'chart-value' }, DASH));
    const box = el('div', { class: 'chart-box', role: 'img', 'aria-labelledby': titleId });
    panel.append(head, box);
    if (def.optional) panel.hidden = true;
    els.detailCharts.append(panel);
    d.panels.set(def.key, { def, el: panel, box, value: head.lastChild, u: null, cores: 0 });
  }
}

export function loadDetail() {
  const d = state.detail;
  if (!d) return;
  const token = ++d.token;
  const host = state.hosts.get(d.id);
  const now = serverNow();
  d.step = stepFor(d.range.ms, host);
  d.from = now - d.range.ms;
  d.to = now;
  d.loading = true;
  updateExportLinks();
  els.detail.setAttribute('aria-busy', 'true');
  getJSON(historyUrl(d.id, d.from, null, d.step), 20000).then((res) => {
    if (state.detail !== d || token !== d.token) return;
    const fresh = (Array.isArray(res.points) ? res.points : []).filter((p) => p && isNum(p.ts));
    const last = fresh.length ? fresh[fresh.length - 1].ts : -Infinity;
    // Live points that arrived during the request are kept.
    for (const p of d.points) if (p.ts > last && p.live) fresh.push(p);
    d.points = fresh;
    d.loading = false;
    els.detailMessage.hidden = true;
    d.dirty = true;
    renderDetail();
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

export function updateExportLinks() {
  const d = state.detail;
  if (!d) return;
  const host = state.hosts.get(d.id);
  const name = ((host && host.hostname) || d.id).replace(/[^\w.-]+/g, '_') + '-' + d.range.key;
  els.exportCsv.href = historyUrl(d.id, d.from, d.to, d.step, 'csv');
  els.exportCsv.setAttribute('download', name + '.csv');
  els.exportCsv.setAttribute('aria-label', 'Export this range as CSV');
  els.exportJson.href = historyUrl(d.id, d.from, d.to, d.step, 'json');
  els.exportJson.setAttribute('download', name + '.json');
  els.exportJson.setAttribute('aria-label', 'Export this range as JSON');
}

export function detailAppend(ev) {
  const d = state.detail;
  if (!d) return;
  const n = d.points.length;
  const last = n ? d.points[n - 1] : null;
  if (!d.step) {
    const p = Object.assign({ live: true }, ev);
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

export function renderDetailHeader() {
  const d = state.detail;
  if (!d) return;
  const host = state.hosts.get(d.id);
  const name = host ? host.hostname || host.id : d.id;
  setText(els.detailTitle, name);
  document.title = name + ' · hostwatch';
  const status = host ? host.status || 'unknown' : state.hostsLoaded ? 'unknown' : '';
  setText(els.detailStatus, status);
  els.detailStatus.dataset.status = status;
  els.detailStatus.hidden = !status;
  if (!host) {
    els.facts.textContent = '';
    d.factKeys = '';
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

export function detailXRange() {
  const d = state.detail;
  const last = d.points.length ? d.points[d.points.length - 1].ts : 0;
  const to = Math.max(serverNow(), last);
  return [to - d.range.ms, to];
}

export function renderDetail() {
  const d = state.detail;
  if (!d) return;
  d.dirty = false;
  renderDetailHeader();
  const host = state.hosts.get(d.id);
  // Drop what slid out of the range.
  const cutoff = detailXRange()[0] - (d.step || 0);
  let drop = 0;
  while (drop < d.points.length && d.points[drop].ts < cutoff) drop++;
  if (drop) d.points.splice(0, drop);

  const pts = d.points;
  const gap = gapThreshold(host, d.step);
  const xs = [];
  const index = []; // for each x: the point, or null for a gap marker
  for (let i = 0; i < pts.length; i++) {
    if (i > 0 && pts[i].ts - pts[i - 1].ts > gap) {
      xs.push(pts[i - 1].ts + 1);
      index.push(null);
    }
    xs.push(pts[i].ts);
    index.push(pts[i]);
  }
  const latest = (host && host.latest) || (pts.length ? pts[pts.length - 1] : {});

  for (const panel of d.panels.values()) {
    const def = panel.def;
    setText(panel.value, host ? def.summary(latest, host) : DASH);
    let seriesDefs = def.series;
    if (def.cores) {
      let cores = 0;
      for (const p of pts) if (Array.isArray(p.cpu_cores_percent)) cores = Math.max(cores, p.cpu_cores_percent.length);
      if (!cores && Array.isArray(latest.cpu_cores_percent)) cores = latest.cpu_cores_percent.length;
      seriesDefs = [];
      for (let c = 0; c < cores; c++) {
        seriesDefs.push({ label: 'cpu' + c, core: c, color: coreColor(c, cores) });
      }
      if (panel.u && panel.cores !== cores) {
        unmountChart(panel.box, panel.u);
        panel.u = null;
      }
      panel.cores = cores;
    }
    const cols = seriesDefs.map((s) => index.map((p) => {
      if (!p) return null;
      const v = s.core !== undefined ? (Array.isArray(p.cpu_cores_percent) ? p.cpu_cores_percent[s.core] : null) : p[s.field];
      return isNum(v) ? v : null;
    }));
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
    const data = [xs.slice()].concat(cols);
    if (!panel.u) {
      if (panel.box.clientWidth === 0) continue;
      panel.u = mountChart(panel.box, detailOptions(panel, seriesDefs), data);
    } else {
      panel.u.setData(data);
    }
  }
}

export function detailOptions(panel, seriesDefs) {
  const def = panel.def;
  const fmt = UNIT_FMT[def.unit];
  let yRange;
  if (def.unit === 'pct') yRange = [0, 100];
  else if (def.maxField) yRange = (u, min, max) => [0, Math.max(max || 0, panel.max || 0) || 1];
  else if (def.unit === 'celsius') yRange = (u, min, max) => [Math.min(min ?? 0, 20), Math.max(max ?? 0, 40) + 5];
  else yRange = (u, min, max) => [0, Math.max(isNum(max) ? max * 1.1 : 0, def.unit === 'num' ? 1 : 1024)];
  return {
    height: 170,
    legend: { show: seriesDefs.length <= 8, live: true },
    cursor: { drag: { x: false, y: false }, sync: { key: 'hostwatch-detail' }, points: { size: 5 } },
    select: { show: false },
    scales: { x: { time: true, range: () => detailXRange() }, y: { range: yRange } },
    axes: [
      axisStyle({ space: 64, size: 28, values: (u, splits) => timeTicks(u, splits) }),
      axisStyle({
        size: axisSize,
        incrs: def.unit === 'bytes' || def.unit === 'rate' ? BINARY_INCRS : undefined,
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
