// The overview: one card per host (or a row of the table view), sorted and filtered.

import { COLORS, DASH, OVERVIEW_MAX_POINTS, OVERVIEW_WINDOW_MS, STATUS_RANK, charts, els, state } from './store.js';
import { getJSON, historyQueue, historyUrl, noteClock, serverNow } from './api.js';
import { gapThreshold, mountChart, sparkOptions, unmountChart } from './charts.js';
import { openHost, renderDetailHeader } from './detail.js';
import { el, fmtAgo, fmtBytes, fmtDuration, fmtPct, fmtRate, fsPct, isNum, level, lowerBound, pct, setText } from './format.js';
import { markDirty } from './render.js';

// Overview cards

export const CARD_TEMPLATE = `
  <div class="card-head">
    <div class="name-wrap">
      <h3 class="host-name"></h3>
      <span class="tag" title="The collector's own host (self-monitoring)" hidden>collector</span>
    </div>
    <span class="badge"></span>
  </div>
  <p class="host-meta"></p>
  <dl class="metrics">
    <div class="metric"><dt>CPU</dt><dd><span class="v-cpu"></span></dd></div>
    <div class="metric"><dt>Memory</dt><dd><span class="v-mem"></span><span class="bar" aria-hidden="true"><span class="bar-fill b-mem"></span></span></dd></div>
    <div class="metric"><dt>Disk</dt><dd><span class="v-disk"></span><span class="bar" aria-hidden="true"><span class="bar-fill b-disk"></span></span></dd></div>
    <div class="metric"><dt>Network</dt><dd class="net"><span><span aria-hidden="true" class="arrow">↓</span><span class="sr-only">received </span><span class="v-rx"></span></span> <span><span aria-hidden="true" class="arrow">↑</span><span class="sr-only">sent </span><span class="v-tx"></span></span></dd></div>
  </dl>
  <div class="sparks">
    <div class="spark"><div class="spark-label"><span>CPU</span><span class="muted">10 min</span></div><div class="spark-chart c-cpu" role="img" aria-label="CPU usage over the last 10 minutes"></div></div>
    <div class="spark"><div class="spark-label"><span>Memory</span><span class="muted">10 min</span></div><div class="spark-chart c-mem" role="img" aria-label="Memory usage over the last 10 minutes"></div></div>
  </div>`;

export const cardByElement = new WeakMap();

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
    badge: q('.badge'),
    meta: q('.host-meta'),
    cpu: q('.v-cpu'),
    mem: q('.v-mem'),
    memBar: q('.b-mem'),
    disk: q('.v-disk'),
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
  state.cards.delete(card.id);
}

export function updateCardText(card) {
  const host = state.hosts.get(card.id);
  if (!host) return;
  const p = host.latest || {};
  setText(card.name, host.hostname || host.id);
  card.name.title = host.hostname || host.id;
  card.selfTag.hidden = !host.self;
  setText(card.badge, host.status || 'unknown');
  card.badge.dataset.status = host.status || 'unknown';
  card.el.dataset.status = host.status || 'unknown';

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

  const diskPct = fsPct(p);
  setText(card.disk, isNum(p.fs_used_bytes) || isNum(p.fs_total_bytes)
    ? fmtBytes(p.fs_used_bytes) + ' / ' + fmtBytes(p.fs_total_bytes) : DASH);
  card.diskBar.style.width = (isNum(diskPct) ? Math.min(100, diskPct) : 0) + '%';
  card.diskBar.dataset.level = level(diskPct);

  setText(card.rx, fmtRate(p.net_rx_bytes_per_second));
  setText(card.tx, fmtRate(p.net_tx_bytes_per_second));

  card.el.setAttribute('aria-label',
    (host.hostname || host.id) + ', ' + (host.status || 'unknown') + ', CPU ' + fmtPct(p.cpu_percent) +
    '. Press Enter for details.');
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
    if (token !== card.loadToken || !state.cards.has(card.id)) return null;
    return getJSON(historyUrl(card.id, serverNow() - OVERVIEW_WINDOW_MS));
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
  memory: (a, b) => hostMem(a) - hostMem(b),
};
export const DEFAULT_DESC = { name: false, status: false, cpu: true, memory: true };

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
  const container = els.hostList;
  const focused = document.activeElement;
  let ref = container.firstElementChild;
  for (const id of ids) {
    const card = state.cards.get(id);
    if (!card) continue;
    if (card.el === ref) {
      ref = ref.nextElementSibling;
    } else {
      container.insertBefore(card.el, ref);
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
    const card = state.cards.get(fresh.id) || createCard(fresh);
    updateCardText(card);
  }
  for (const id of Array.from(state.hosts.keys())) {
    if (!seen.has(id)) {
      state.hosts.delete(id);
      const card = state.cards.get(id);
      if (card) removeCard(card);
    }
  }
  state.hostsLoaded = true;
  renderList();
  if (state.detail) renderDetailHeader();
}
