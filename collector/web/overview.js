// The overview: one card per host (or a row of the table view), sorted and filtered.

import { COLORS, DASH, OVERVIEW_MAX_POINTS, OVERVIEW_WINDOW_MS, STATUS_RANK, charts, els, state } from './store.js';
import { getJSON, historyQueue, historyUrl, noteClock, serverNow } from './api.js';
import { gapThreshold, mountChart, sparkOptions, unmountChart } from './charts.js';
import { openHost, renderDetailHeader } from './detail.js';
import { el, fmtAgo, fmtBytes, fmtDuration, fmtNum, fmtPct, fmtRate, fsPct, isNum, level, lowerBound, pct, setText } from './format.js';
import { alertText, displayName, displayStatus, fullestMount, hostAlerts, nameCollides, recountNames } from './hosts.js';
import { markDirty } from './render.js';

// Overview cards

export const CARD_TEMPLATE = `
  <div class="card-head">
    <div class="name-wrap">
      <h3 class="host-name"></h3>
      <span class="tag" title="The collector's own host (self-monitoring)" hidden>collector</span>
      <span class="host-id mono" title="Host id: another host has the same hostname" hidden></span>
    </div>
    <span class="alert-badge" role="status" hidden></span>
    <span class="badge"></span>
  </div>
  <p class="host-meta"></p>
  <dl class="metrics">
    <div class="metric"><dt>CPU</dt><dd><span class="v-cpu"></span></dd></div>
    <div class="metric"><dt>Memory</dt><dd><span class="v-mem"></span><span class="bar" aria-hidden="true"><span class="bar-fill b-mem"></span></span></dd></div>
    <div class="metric"><dt>Disk <span class="disk-mount muted"></span></dt><dd><span class="v-disk"></span><span class="bar" aria-hidden="true"><span class="bar-fill b-disk"></span></span></dd></div>
    <div class="metric"><dt>Network</dt><dd class="net"><span><span aria-hidden="true" class="arrow">↓</span><span class="sr-only">received </span><span class="v-rx"></span></span> <span><span aria-hidden="true" class="arrow">↑</span><span class="sr-only">sent </span><span class="v-tx"></span></span></dd></div>
  </dl>
  <div class="sparks">
    <div class="spark"><div class="spark-label"><span>CPU</span><span class="muted">10 min</span></div><div class="spark-chart c-cpu" role="img" aria-label="CPU usage over the last 10 minutes"></div></div>
    <div class="spark"><div class="spark-label"><span>Memory</span><span class="muted">10 min</span></div><div class="spark-chart c-mem" role="img" aria-label="Memory usage over the last 10 minutes"></div></div>
  </div>`;

export const cardByElement = new WeakMap();

// What a card's charts need of the history.
const CARD_SERIES = 'cpu_percent,memory_used_bytes,memory_total_bytes';

export const visibility = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const card = cardByElement.get(entry.target);
    if (!card) continue;
    card.visible = entry.isIntersecting;
    if (card.visible) {
      ensureCardCharts(card);
      card.chartDirty = true;
      markDirty(card.id);
    }
  }
}, { rootMargin: '300px 0px' });

export function createCard(host) {
  const node = el('article', { class: 'host-card', tabindex: '0', 'data-host-id': host.id });
  node.innerHTML = CARD_TEMPLATE;
  const q = (s) => node.querySelector(s);
  const card = {
    id: host.id,
    el: node,
    name: q('.host-name'),
    selfTag: q('.tag'),
    hostId: q('.host-id'),
    alertBadge: q('.alert-badge'),
    badge: q('.badge'),
    meta: q('.host-meta'),
    cpu: q('.v-cpu'),
    mem: q('.v-mem'),
    memBar: q('.b-mem'),
    disk: q('.v-disk'),
    diskMount: q('.disk-mount'),
    diskBar: q('.b-disk'),
    rx: q('.v-rx'),
    tx: q('.v-tx'),
    cpuBox: q('.c-cpu'),
    memBox: q('.c-mem'),
    cpuChart: null,
    memChart: null,
    xs: [],
    cpuData: [],
    memData: [],
    visible: false,
    loaded: false, // history fetched since the last (re)connect
    loadToken: 0,
    chartDirty: false,
  };
  node.addEventListener('click', () => openHost(card.id));
  node.addEventListener('keydown', (e) => {
    if ((e.key === 'Enter' || e.key === ' ') && e.target === node) {
      e.preventDefault();
      openHost(card.id);
    }
  });
  cardByElement.set(node, card);
  visibility.observe(node);
  state.cards.set(host.id, card);
  updateCardText(card);
  return card;
}

export function removeCard(card) {
  visibility.unobserve(card.el);
  unmountChart(card.cpuBox, card.cpuChart);
  unmountChart(card.memBox, card.memChart);
  delete charts[card.id];
  card.el.remove();
  if (card.row) {
    rowVisibility.unobserve(card.row.el);
    card.row.el.remove();
  }
  state.cards.delete(card.id);
}

export function updateCardText(card) {
  const host = state.hosts.get(card.id);
  if (!host) return;
  if (state.view === 'table') {
    updateRow(card, host);
    return;
  }
  const p = host.latest || {};
  const name = host.hostname || host.id;
  const status = displayStatus(host);
  setText(card.name, name);
  card.name.title = name;
  card.selfTag.hidden = !host.self;
  const twin = nameCollides(host);
  card.hostId.hidden = !twin;
  if (twin) setText(card.hostId, host.id);
  setText(card.badge, status);
  card.badge.dataset.status = status;
  card.el.dataset.status = status;

  const firing = hostAlerts(host.id);
  card.alertBadge.hidden = firing.length === 0;
  card.el.dataset.alerts = String(firing.length);
  if (firing.length) {
    setText(card.alertBadge, firing.length === 1 ? '1 alert' : firing.length + ' alerts');
    card.alertBadge.title = firing.map(alertText).join('\n');
  }

  const meta = [];
  if (host.os) meta.push(host.os);
  if (host.arch) meta.push(host.arch);
  if (isNum(host.cpu_cores)) meta.push(host.cpu_cores + (host.cpu_cores === 1 ? ' core' : ' cores'));
  if (host.status === 'online') {
    if (isNum(p.uptime_seconds)) meta.push('up ' + fmtDuration(p.uptime_seconds));
  } else {
    meta.push('last seen ' + (isNum(host.last_seen) ? fmtAgo(host.last_seen) : 'never'));
  }
  setText(card.meta, meta.join(' · '));

  setText(card.cpu, fmtPct(p.cpu_percent));
  card.cpu.dataset.level = level(p.cpu_percent);

  const memTotal = isNum(p.memory_total_bytes) ? p.memory_total_bytes : host.memory_total_bytes;
  const memPct = pct(p.memory_used_bytes, memTotal);
  setText(card.mem, isNum(p.memory_used_bytes) || isNum(memTotal)
    ? fmtBytes(p.memory_used_bytes) + ' / ' + fmtBytes(memTotal) : DASH);
  card.memBar.style.width = (isNum(memPct) ? Math.min(100, memPct) : 0) + '%';
  card.memBar.dataset.level = level(memPct);

  // The fullest mount, not the sum of all: the one that fills up first is the one to watch.
  const fullest = fullestMount(host);
  const diskPct = fullest ? fullest.percent : fsPct(p);
  setText(card.diskMount, fullest ? fullest.fs.mount_point : '');
  card.diskMount.title = fullest ? 'The fullest mount, ' + fmtPct(fullest.percent) + ' used' : '';
  const used = fullest ? fullest.fs.used_bytes : p.fs_used_bytes;
  const total = fullest ? fullest.fs.total_bytes : p.fs_total_bytes;
  setText(card.disk, isNum(used) || isNum(total) ? fmtBytes(used) + ' / ' + fmtBytes(total) : DASH);
  card.diskBar.style.width = (isNum(diskPct) ? Math.min(100, diskPct) : 0) + '%';
  card.diskBar.dataset.level = level(diskPct);

  setText(card.rx, fmtRate(p.net_rx_bytes_per_second));
  setText(card.tx, fmtRate(p.net_tx_bytes_per_second));

  card.el.setAttribute('aria-label',
    displayName(host) + ', ' + status + (firing.length ? ', ' + firing.length + ' alerts firing' : '') +
    ', CPU ' + fmtPct(p.cpu_percent) + '. Press Enter for details.');
}

// The table view: one row per host, every column sortable.

const num = (v) => (isNum(v) ? v : -Infinity);
const latest = (h, field) => num(h.latest && h.latest[field]);
export const COLUMNS = [
  { key: 'name', label: 'Host', text: (h) => displayName(h) },
  { key: 'status', label: 'Status', text: (h) => displayStatus(h) },
  { key: 'alerts', label: 'Alerts', text: (h) => String(hostAlerts(h.id).length || ''), num: (h) => hostAlerts(h.id).length },
  { key: 'cpu', label: 'CPU', text: (h) => fmtPct(h.latest && h.latest.cpu_percent), num: (h) => latest(h, 'cpu_percent') },
  { key: 'memory', label: 'Memory', text: (h) => fmtPct(hostMem(h) >= 0 ? hostMem(h) : null), num: (h) => hostMem(h) },
  {
    key: 'disk', label: 'Fullest mount',
    text: (h) => { const f = fullestMount(h); return f ? fmtPct(f.percent) + ' ' + f.fs.mount_point : DASH; },
    num: (h) => { const f = fullestMount(h); return f ? f.percent : -Infinity; },
  },
  { key: 'rx', label: 'Received', text: (h) => fmtRate(h.latest && h.latest.net_rx_bytes_per_second), num: (h) => latest(h, 'net_rx_bytes_per_second') },
  { key: 'tx', label: 'Sent', text: (h) => fmtRate(h.latest && h.latest.net_tx_bytes_per_second), num: (h) => latest(h, 'net_tx_bytes_per_second') },
  { key: 'load', label: 'Load 1 min', text: (h) => fmtNum(h.latest && h.latest.load1, 2), num: (h) => latest(h, 'load1') },
  { key: 'uptime', label: 'Uptime', text: (h) => fmtDuration(h.latest && h.latest.uptime_seconds), num: (h) => latest(h, 'uptime_seconds') },
  { key: 'seen', label: 'Last seen', text: (h) => (h.status === 'online' ? 'now' : isNum(h.last_seen) ? fmtAgo(h.last_seen) : 'never'), num: (h) => num(h.last_seen) },
];

// Which table rows are on screen (or nearly): only those are rewritten as samples arrive.
const rowVisibility = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const card = cardByElement.get(entry.target);
    if (!card) continue;
    card.rowVisible = entry.isIntersecting;
    if (card.rowVisible) markDirty(card.id);
  }
}, { rootMargin: '300px 0px' });

function createRow(card) {
  const tr = el('tr', { 'data-host-id': card.id, tabindex: '0' });
  cardByElement.set(tr, card);
  rowVisibility.observe(tr);
  const cells = COLUMNS.map((c) => {
    const td = el(c.key === 'name' ? 'th' : 'td', c.key === 'name' ? { scope: 'row' } : { class: c.num ? 'num' : null });
    tr.append(td);
    return td;
  });
  tr.addEventListener('click', () => openHost(card.id));
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target === tr) openHost(card.id);
  });
  card.row = { el: tr, cells };
  return card.row;
}

function updateRow(card, host) {
  const row = card.row || createRow(card);
  COLUMNS.forEach((c, i) => setText(row.cells[i], c.text(host)));
  row.el.dataset.status = displayStatus(host);
  row.el.dataset.alerts = String(hostAlerts(host.id).length);
}

// Builds the table's header once: a button per column that sorts by it.
export function buildTableHead() {
  const tr = el('tr');
  for (const c of COLUMNS) {
    const th = el('th', { scope: 'col', 'data-sort': c.key });
    const b = el('button', { type: 'button', class: 'th-sort' }, c.label);
    b.addEventListener('click', () => sortBy(c.key, state.sortKey === c.key ? !state.sortDesc : DEFAULT_DESC[c.key] || false));
    th.append(b);
    tr.append(th);
  }
  els.hostTable.tHead.append(tr);
}

// Sorts the overview (cards and table alike) by a column.
export function sortBy(key, desc) {
  state.sortKey = key;
  state.sortDesc = desc;
  if (els.sort.value !== key) els.sort.value = key;
  renderSortState();
  renderList();
}

export function renderSortState() {
  const label = state.sortDesc ? 'Sorted descending; sort ascending' : 'Sorted ascending; sort descending';
  els.sortDir.setAttribute('aria-label', label);
  els.sortDir.title = label;
  els.sortDir.dataset.dir = state.sortDesc ? 'desc' : 'asc';
  for (const th of els.hostTable.tHead.querySelectorAll('th[data-sort]')) {
    th.setAttribute('aria-sort', th.dataset.sort === state.sortKey ? (state.sortDesc ? 'descending' : 'ascending') : 'none');
  }
}

// Cards or table; remembered in the browser.
export function setView(view) {
  state.view = view === 'table' ? 'table' : 'cards';
  try {
    window.localStorage.setItem('hostwatch.view', state.view);
  } catch (_) { /* private mode */ }
  els.hostList.hidden = state.view !== 'cards';
  els.hostTable.hidden = state.view !== 'table';
  for (const b of els.viewButtons.querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
  }
  for (const card of state.cards.values()) updateCardText(card);
  renderList();
}

// A host removed (by an admin, here or elsewhere): gone from every view.
export function forgetHost(id) {
  state.hosts.delete(id);
  state.alerts.delete(id);
  const card = state.cards.get(id);
  if (card) removeCard(card);
  recountNames();
  renderList();
  if (state.detail && state.detail.id === id) renderDetailHeader();
}

export function overviewRange(card) {
  const last = card.xs.length ? card.xs[card.xs.length - 1] : 0;
  const max = Math.max(serverNow(), last);
  return [max - OVERVIEW_WINDOW_MS, max];
}

export function ensureCardCharts(card) {
  if (!card.cpuChart) {
    if (card.cpuBox.clientWidth === 0) return; // not laid out (hidden); retried when visible
    const range = () => overviewRange(card);
    card.cpuChart = mountChart(card.cpuBox, sparkOptions('CPU', COLORS.cpu, 44, range), [[], []]);
    card.memChart = mountChart(card.memBox, sparkOptions('Memory', COLORS.mem, 44, range), [[], []]);
    charts[card.id] = card.cpuChart;
    card.chartDirty = true;
  }
  if (!card.loaded && !card.loading && Date.now() >= (card.retryAt || 0)) loadCardHistory(card);
}

// Fetches the last 10 minutes of a card's host; the overview charts start from that.
export function loadCardHistory(card) {
  const token = ++card.loadToken;
  card.loading = true;
  historyQueue(() => {
    // Scrolled past before its turn: loaded when it is on screen again.
    if (token !== card.loadToken || !state.cards.has(card.id) || !card.visible) return null;
    return getJSON(historyUrl(card.id, serverNow() - OVERVIEW_WINDOW_MS, null, null, null, CARD_SERIES));
  }).then((res) => {
    if (!res || token !== card.loadToken) return;
    const points = Array.isArray(res.points) ? res.points : [];
    const xs = [];
    const cpu = [];
    const mem = [];
    let last = -Infinity;
    for (const p of points) {
      if (!p || !isNum(p.ts) || p.ts <= last) continue;
      xs.push(p.ts);
      cpu.push(isNum(p.cpu_percent) ? p.cpu_percent : null);
      mem.push(pct(p.memory_used_bytes, p.memory_total_bytes));
      last = p.ts;
    }
    // Keep live points that arrived while the request was in flight.
    for (let i = 0; i < card.xs.length; i++) {
      if (card.xs[i] > last) {
        xs.push(card.xs[i]);
        cpu.push(card.cpuData[i]);
        mem.push(card.memData[i]);
      }
    }
    card.xs = xs;
    card.cpuData = cpu;
    card.memData = mem;
    card.loaded = true;
    card.retryAt = 0;
    card.chartDirty = true;
    markDirty(card.id);
  }).catch(() => {
    // Left unloaded: retried a little later, and on the next reconnect or resume.
    if (token === card.loadToken) card.retryAt = Date.now() + 5000;
  }).finally(() => {
    if (token === card.loadToken) card.loading = false;
  });
}

export function appendCardPoint(card, p) {
  const n = card.xs.length;
  const cpu = isNum(p.cpu_percent) ? p.cpu_percent : null;
  const mem = pct(p.memory_used_bytes, p.memory_total_bytes);
  if (n === 0 || p.ts > card.xs[n - 1]) {
    card.xs.push(p.ts);
    card.cpuData.push(cpu);
    card.memData.push(mem);
  } else {
    // An older sample (an agent replaying after an outage): insert it in place, once.
    const i = lowerBound(card.xs, p.ts);
    if (card.xs[i] === p.ts) return;
    card.xs.splice(i, 0, p.ts);
    card.cpuData.splice(i, 0, cpu);
    card.memData.splice(i, 0, mem);
  }
  if (card.xs.length > OVERVIEW_MAX_POINTS + 60) trimCard(card);
  card.chartDirty = true;
}

export function trimCard(card) {
  const cutoff = Math.max(serverNow(), card.xs.length ? card.xs[card.xs.length - 1] : 0) - OVERVIEW_WINDOW_MS;
  let drop = lowerBound(card.xs, cutoff);
  drop = Math.max(drop, card.xs.length - OVERVIEW_MAX_POINTS);
  if (drop > 0) {
    card.xs.splice(0, drop);
    card.cpuData.splice(0, drop);
    card.memData.splice(0, drop);
  }
}

// Column arrays for uPlot, with a null point wherever samples are missing, so that an outage
// shows as a gap instead of a straight line.
export function withGaps(xs, cols, gap) {
  const outX = [];
  const outCols = cols.map(() => []);
  for (let i = 0; i < xs.length; i++) {
    if (i > 0 && xs[i] - xs[i - 1] > gap) {
      outX.push(xs[i - 1] + 1);
      for (const c of outCols) c.push(null);
    }
    outX.push(xs[i]);
    for (let k = 0; k < cols.length; k++) outCols[k].push(cols[k][i]);
  }
  return [outX].concat(outCols);
}

export function renderCardCharts(card) {
  if (!card.cpuChart || !card.chartDirty) return;
  trimCard(card);
  const [xs, cpu, mem] = withGaps(card.xs, [card.cpuData, card.memData], gapThreshold(state.hosts.get(card.id)));
  card.cpuChart.setData([xs, cpu]);
  card.memChart.setData([xs.slice(), mem]);
  card.chartDirty = false;
}

// Host list: sort, filter, render

export function hostCpu(h) {
  return h.latest && isNum(h.latest.cpu_percent) ? h.latest.cpu_percent : -1;
}

export function hostMem(h) {
  const p = h.latest;
  const v = p ? pct(p.memory_used_bytes, isNum(p.memory_total_bytes) ? p.memory_total_bytes : h.memory_total_bytes) : null;
  return isNum(v) ? v : -1;
}

export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
export const byName = (a, b) => collator.compare(a.hostname || a.id, b.hostname || b.id) || collator.compare(a.id, b.id);
export const COMPARATORS = {
  name: byName,
  status: (a, b) => (STATUS_RANK[a.status] ?? -1) - (STATUS_RANK[b.status] ?? -1),
  cpu: (a, b) => hostCpu(a) - hostCpu(b),
};
// Every numeric column of the table sorts by its number.
for (const c of COLUMNS) if (c.num && !COMPARATORS[c.key]) COMPARATORS[c.key] = (a, b) => c.num(a) - c.num(b);
export const DEFAULT_DESC = { name: false, status: false };
for (const c of COLUMNS) if (c.num) DEFAULT_DESC[c.key] = true;

export function visibleHostIds() {
  const q = state.filter.trim().toLowerCase();
  let list = Array.from(state.hosts.values());
  if (q) {
    list = list.filter((h) => [h.hostname, h.id, h.os, h.status, h.arch, h.kernel, h.cpu_model]
      .some((s) => s && String(s).toLowerCase().includes(q)));
  }
  const cmp = COMPARATORS[state.sortKey] || byName;
  const dir = state.sortDesc ? -1 : 1;
  list.sort((a, b) => dir * cmp(a, b) || byName(a, b));
  return list.map((h) => h.id);
}

export function renderList() {
  state.lastSort = Date.now();
  state.needResort = false;
  const ids = visibleHostIds();
  const table = state.view === 'table';
  const container = table ? els.hostTable.tBodies[0] : els.hostList;
  const focused = document.activeElement;
  let ref = container.firstElementChild;
  for (const id of ids) {
    const card = state.cards.get(id);
    if (!card) continue;
    // A new row is filled now; the others when on screen (as samples arrive, or scrolled to).
    if (table && !card.row) updateRow(card, state.hosts.get(id));
    else if (table && card.rowVisible) markDirty(id);
    const node = table ? card.row.el : card.el;
    if (node === ref) {
      ref = ref.nextElementSibling;
    } else {
      container.insertBefore(node, ref);
    }
  }
  while (ref) {
    const next = ref.nextElementSibling;
    ref.remove();
    ref = next;
  }
  if (focused && focused !== document.activeElement && container.contains(focused)) {
    focused.focus({ preventScroll: true });
  }
  renderSummary(ids.length);
}

export function renderSummary(shown) {
  const counts = { online: 0, stale: 0, offline: 0 };
  for (const h of state.hosts.values()) if (h.status in counts) counts[h.status]++;
  const total = state.hosts.size;
  const parts = [total + (total === 1 ? ' host' : ' hosts')];
  for (const s of ['online', 'stale', 'offline']) if (counts[s]) parts.push(counts[s] + ' ' + s);
  if (shown !== total) parts.push(shown + ' shown');
  setText(els.hostSummary, state.hostsLoaded ? parts.join(' · ') : '');

  let msg = null;
  if (state.hostsError && !state.hostsLoaded) msg = 'Cannot load hosts: ' + state.hostsError + '. Retrying…';
  else if (state.hostsLoaded && total === 0) msg = 'No hosts yet. Start hostwatch-agent on a host and it appears here.';
  else if (state.hostsLoaded && shown === 0) msg = 'No hosts match “' + state.filter.trim() + '”.';
  else if (!state.hostsLoaded) msg = 'Loading hosts…';
  els.hostsMessage.hidden = msg === null;
  if (msg !== null) setText(els.hostsMessage, msg);
}

// Host list loading

export let hostsInFlight = false;
export let hostsAgain = false;
export let hostsTimer = null;

export function requestHosts(delay) {
  if (hostsTimer) return;
  hostsTimer = setTimeout(() => {
    hostsTimer = null;
    loadHosts();
  }, delay === undefined ? 300 : delay);
}

export async function loadHosts() {
  if (hostsInFlight) {
    hostsAgain = true;
    return;
  }
  hostsInFlight = true;
  try {
    const list = await getJSON('api/hosts');
    applyHostList(Array.isArray(list) ? list : []);
    state.hostsError = null;
  } catch (err) {
    state.hostsError = err.message || String(err);
    if (!state.hostsLoaded) requestHosts(3000);
    renderSummary(state.hosts.size);
  } finally {
    hostsInFlight = false;
    if (hostsAgain) {
      hostsAgain = false;
      requestHosts(0);
    }
  }
}

export function applyHostList(list) {
  const seen = new Set();
  if (!state.hostsLoaded) {
    for (const h of list) if (h && h.status === 'online') noteClock(h.last_seen);
  }
  for (const fresh of list) {
    if (!fresh || typeof fresh.id !== 'string') continue;
    seen.add(fresh.id);
    const old = state.hosts.get(fresh.id);
    // A live sample newer than this snapshot wins (unless paused: then the snapshot is news).
    if (old && old.latest && fresh.latest && old.latest.ts > fresh.latest.ts) fresh.latest = old.latest;
    state.hosts.set(fresh.id, fresh);
  }
  for (const id of Array.from(state.hosts.keys())) {
    if (!seen.has(id)) {
      state.hosts.delete(id);
      const card = state.cards.get(id);
      if (card) removeCard(card);
    }
  }
  recountNames();
  // New hosts get a card now; the others are rewritten when on screen (render.js).
  for (const id of seen) {
    if (state.cards.has(id)) markDirty(id);
    else createCard(state.hosts.get(id));
  }
  state.hostsLoaded = true;
  renderList();
  if (state.detail) renderDetailHeader();
}
