// hostwatch page: overview of every host, host detail, collector panel and live updates.
//
// Plain JavaScript, no build step. Charts are uPlot (loaded before this file). Talks to the
// collector's JSON API and its Server-Sent Events stream, as described in docs/API.md. All URLs
// are relative, so the page also works behind a reverse proxy under a sub-path.
'use strict';

(function () {
  const root = document.documentElement;

  // ---------------------------------------------------------------------------------------------
  // Theme: applied right away (this script runs in <head>), so the page never flashes.

  const THEME_KEY = 'hostwatch.theme';
  const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

  function storedTheme() {
    try {
      const t = window.localStorage.getItem(THEME_KEY);
      return t === 'dark' || t === 'light' ? t : null;
    } catch (_) {
      return null;
    }
  }

  function effectiveTheme() {
    return storedTheme() || (darkQuery.matches ? 'dark' : 'light');
  }

  root.dataset.theme = effectiveTheme();

  // ---------------------------------------------------------------------------------------------
  // Constants

  const OVERVIEW_WINDOW_MS = 10 * 60 * 1000; // overview charts show the last 10 minutes
  const OVERVIEW_MAX_POINTS = 1200; // hard cap per overview chart (10 min at 0.5 s)
  const DETAIL_MAX_POINTS = 1500; // the most points a detail range asks for
  const DETAIL_HARD_CAP = 4000; // hard cap of points kept in the detail view
  const FEED_MAX = 100;
  const STATS_INTERVAL_MS = 3000;
  const HOSTS_REFRESH_MS = 30000;
  const RESORT_INTERVAL_MS = 5000;
  const FETCH_TIMEOUT_MS = 10000;
  const RANGES = [
    { key: '15m', label: '15 min', ms: 15 * 60 * 1000 },
    { key: '1h', label: '1 h', ms: 60 * 60 * 1000 },
    { key: '6h', label: '6 h', ms: 6 * 60 * 60 * 1000 },
    { key: '24h', label: '24 h', ms: 24 * 60 * 60 * 1000 },
  ];
  const NICE_STEPS_S = [1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600];
  // Named SSE events we listen to; anything else the collector may add later is ignored.
  const SSE_TYPES = [
    'sample', 'agent_connected', 'agent_disconnected', 'status', 'notification',
    'alert', 'alert_firing', 'alert_resolved', 'lagged', 'shutdown', 'resync',
  ];
  const STATUS_RANK = { offline: 0, stale: 1, online: 2 };
  const COLORS = {
    cpu: '#3b82f6',
    mem: '#a855f7',
    swap: '#f59e0b',
    rx: '#10b981',
    tx: '#f97316',
    read: '#06b6d4',
    write: '#ec4899',
    load1: '#ef4444',
    load5: '#f59e0b',
    load15: '#84cc16',
    temp: '#ef4444',
    fs: '#eab308',
  };
  const DASH = '—';

  // ---------------------------------------------------------------------------------------------
  // Formatting

  function isNum(v) {
    return typeof v === 'number' && Number.isFinite(v);
  }

  function fmtPct(v) {
    return isNum(v) ? v.toFixed(1) + ' %' : DASH;
  }

  const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

  function fmtBytes(v) {
    if (!isNum(v)) return DASH;
    const neg = v < 0;
    let n = Math.abs(v);
    let i = 0;
    while (n >= 1024 && i < BYTE_UNITS.length - 1) {
      n /= 1024;
      i++;
    }
    const digits = i === 0 ? 0 : n < 10 ? 2 : n < 100 ? 1 : 0;
    return (neg ? '-' : '') + n.toFixed(digits) + ' ' + BYTE_UNITS[i];
  }

  function fmtRate(v) {
    return isNum(v) ? fmtBytes(v) + '/s' : DASH;
  }

  // Short form for chart axes: "1.5 GiB", "200 MiB".
  function fmtBytesShort(v) {
    if (!isNum(v)) return '';
    let n = Math.abs(v);
    let i = 0;
    while (n >= 1024 && i < BYTE_UNITS.length - 1) {
      n /= 1024;
      i++;
    }
    const s = n < 10 && i > 0 ? n.toFixed(1).replace(/\.0$/, '') : Math.round(n).toString();
    return (v < 0 ? '-' : '') + s + ' ' + BYTE_UNITS[i];
  }

  function fmtNum(v, digits) {
    return isNum(v) ? v.toFixed(digits) : DASH;
  }

  function fmtInt(v) {
    return isNum(v) ? Math.round(v).toLocaleString() : DASH;
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds)) return DASH;
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + s + 's';
    return s + 's';
  }

  function fmtAgo(ms) {
    if (!isNum(ms)) return DASH;
    const diff = Math.max(0, serverNow() - ms) / 1000;
    if (diff < 5) return 'just now';
    return fmtDuration(diff) + ' ago';
  }

  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function fmtDateTime(ms) {
    if (!isNum(ms)) return DASH;
    return new Date(ms).toLocaleString([], {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }

  function pct(used, total) {
    return isNum(used) && isNum(total) && total > 0 ? (used / total) * 100 : null;
  }

  // Filesystem use as df shows it (used / (used + available)), which is what the
  // fs_used_percent alert judges; points that lack it (history) fall back to used / size.
  function fsPct(p) {
    return isNum(p.fs_used_percent) ? p.fs_used_percent : pct(p.fs_used_bytes, p.fs_total_bytes);
  }

  function level(p) {
    if (!isNum(p)) return '';
    return p >= 90 ? 'crit' : p >= 75 ? 'warn' : 'ok';
  }

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  async function getJSON(path, timeout) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout || FETCH_TIMEOUT_MS);
    try {
      const res = await fetch(path, { signal: ctl.signal, cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!res.ok) {
        let msg = 'HTTP ' + res.status;
        try {
          const body = await res.json();
          if (body && body.error) msg = body.error;
        } catch (_) { /* not JSON */ }
        const err = new Error(msg);
        err.status = res.status;
        throw err;
      }
      return await res.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // Runs at most `n` of the given async functions at once (history requests of many cards).
  function limiter(n) {
    let active = 0;
    const queue = [];
    const next = () => {
      if (active >= n || queue.length === 0) return;
      active++;
      const job = queue.shift();
      Promise.resolve().then(job.fn).then(job.resolve, job.reject).finally(() => {
        active--;
        next();
      });
    };
    return (fn) => new Promise((resolve, reject) => {
      queue.push({ fn, resolve, reject });
      next();
    });
  }
  const historyQueue = limiter(4);

  function historyUrl(id, from, to, step, format) {
    let url = 'api/hosts/' + encodeURIComponent(id) + '/history?from=' + Math.floor(from);
    if (to !== null && to !== undefined) url += '&to=' + Math.ceil(to);
    if (step) url += '&step=' + step;
    // The charts draw host totals; an export carries every series, devices included.
    if (format) url += '&format=' + format;
    else url += '&series=host';
    return url;
  }

  // The collector's clock, estimated from the timestamps of live samples: time ranges are asked
  // for and drawn in the collector's time even when the browser's clock is off.
  const clock = { offsets: [], offset: 0 };

  function noteClock(ts) {
    if (!isNum(ts)) return;
    clock.offsets.push(ts - Date.now());
    if (clock.offsets.length > 31) clock.offsets.shift();
    const sorted = clock.offsets.slice().sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1];
    // Small differences are network latency and sampling jitter, not a wrong clock.
    clock.offset = Math.abs(median) > 3000 ? median : 0;
  }

  function serverNow() {
    return Date.now() + clock.offset;
  }

  // Index of the first element whose key is >= value (arr sorted by key).
  function lowerBound(arr, value, key) {
    let lo = 0;
    let hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((key ? key(arr[mid]) : arr[mid]) < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // Points further apart than this are drawn with a gap between them, not joined by a line.
  function gapThreshold(host, step) {
    if (step) return step * 2.5;
    const interval = host && isNum(host.interval_ms) && host.interval_ms > 0 ? host.interval_ms : 1000;
    return Math.max(interval * 3.5, 5000);
  }

  // ---------------------------------------------------------------------------------------------
  // State

  const state = {
    hosts: new Map(), // id -> host object (as from /api/hosts, kept up to date by events)
    cards: new Map(), // id -> overview card
    hostsLoaded: false,
    sortKey: 'name',
    sortDesc: false,
    filter: '',
    lastSort: 0,
    needResort: false,
    paused: false,
    conn: 'connecting',
    es: null,
    everOpened: false,
    interrupted: false,
    backoff: 1000,
    reconnectTimer: null,
    detail: null,
    lastStats: null,
  };

  const charts = {}; // host id -> uPlot of that host's overview CPU chart
  // For tests and debugging: the overview CPU chart of each host, how many times the live stream
  // (re)opened, and the charts of the open detail view.
  window.hostwatch = {
    charts,
    connections: 0,
    state,
    detailCharts: () => (state.detail ? Array.from(state.detail.panels.values()).map((p) => p.u).filter(Boolean) : []),
  };

  let els = {};

  // ---------------------------------------------------------------------------------------------
  // uPlot helpers

  const chartTheme = { axis: '#666', grid: 'rgba(0,0,0,.08)', text: '#333' };

  function readChartTheme() {
    const cs = getComputedStyle(root);
    chartTheme.axis = cs.getPropertyValue('--chart-axis').trim() || chartTheme.axis;
    chartTheme.grid = cs.getPropertyValue('--chart-grid').trim() || chartTheme.grid;
  }

  function alpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return 'rgba(' + ((n >> 16) & 255) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
  }

  // Every uPlot instance, with the height it wants; resized with its container.
  const sized = new Map(); // container element -> { u, height }
  const resizer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const s = sized.get(entry.target);
      if (!s) continue;
      const width = Math.floor(entry.contentRect.width);
      if (width > 0 && (width !== s.u.width || s.height !== s.u.height)) {
        s.u.setSize({ width, height: s.height });
      }
    }
  });

  function mountChart(container, opts, data) {
    const width = Math.floor(container.clientWidth) || 300;
    const u = new uPlot(Object.assign({ width, ms: 1 }, opts), data, container);
    sized.set(container, { u, height: opts.height });
    resizer.observe(container);
    return u;
  }

  function unmountChart(container, u) {
    if (!u) return;
    resizer.unobserve(container);
    sized.delete(container);
    u.destroy();
  }

  function redrawAllCharts() {
    readChartTheme();
    for (const { u } of sized.values()) u.redraw(false, true);
  }

  function axisStyle(extra) {
    return Object.assign({
      stroke: () => chartTheme.axis,
      grid: { stroke: () => chartTheme.grid, width: 1 },
      ticks: { stroke: () => chartTheme.grid, width: 1, size: 4 },
      font: '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
    }, extra);
  }

  function sparkOptions(label, color, height, xRange) {
    return {
      height,
      class: 'spark-plot',
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      padding: [3, 0, 1, 0],
      scales: { x: { time: true, range: xRange }, y: { range: [0, 100] } },
      axes: [{ show: false }, { show: false }],
      series: [
        {},
        { label, stroke: color, width: 1.5, fill: alpha(color, 0.18), points: { show: false } },
      ],
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Overview cards

  const CARD_TEMPLATE = `
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

  const cardByElement = new WeakMap();

  const visibility = new IntersectionObserver((entries) => {
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

  function createCard(host) {
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

  function removeCard(card) {
    visibility.unobserve(card.el);
    unmountChart(card.cpuBox, card.cpuChart);
    unmountChart(card.memBox, card.memChart);
    delete charts[card.id];
    card.el.remove();
    state.cards.delete(card.id);
  }

  function updateCardText(card) {
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

  function overviewRange(card) {
    const last = card.xs.length ? card.xs[card.xs.length - 1] : 0;
    const max = Math.max(serverNow(), last);
    return [max - OVERVIEW_WINDOW_MS, max];
  }

  function ensureCardCharts(card) {
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
  function loadCardHistory(card) {
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

  function appendCardPoint(card, p) {
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

  function trimCard(card) {
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
  function withGaps(xs, cols, gap) {
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

  function renderCardCharts(card) {
    if (!card.cpuChart || !card.chartDirty) return;
    trimCard(card);
    const [xs, cpu, mem] = withGaps(card.xs, [card.cpuData, card.memData], gapThreshold(state.hosts.get(card.id)));
    card.cpuChart.setData([xs, cpu]);
    card.memChart.setData([xs.slice(), mem]);
    card.chartDirty = false;
  }

  // ---------------------------------------------------------------------------------------------
  // Host list: sort, filter, render

  function hostCpu(h) {
    return h.latest && isNum(h.latest.cpu_percent) ? h.latest.cpu_percent : -1;
  }

  function hostMem(h) {
    const p = h.latest;
    const v = p ? pct(p.memory_used_bytes, isNum(p.memory_total_bytes) ? p.memory_total_bytes : h.memory_total_bytes) : null;
    return isNum(v) ? v : -1;
  }

  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
  const byName = (a, b) => collator.compare(a.hostname || a.id, b.hostname || b.id) || collator.compare(a.id, b.id);
  const COMPARATORS = {
    name: byName,
    status: (a, b) => (STATUS_RANK[a.status] ?? -1) - (STATUS_RANK[b.status] ?? -1),
    cpu: (a, b) => hostCpu(a) - hostCpu(b),
    memory: (a, b) => hostMem(a) - hostMem(b),
  };
  const DEFAULT_DESC = { name: false, status: false, cpu: true, memory: true };

  function visibleHostIds() {
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

  function renderList() {
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

  function renderSummary(shown) {
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

  // ---------------------------------------------------------------------------------------------
  // Host list loading

  let hostsInFlight = false;
  let hostsAgain = false;
  let hostsTimer = null;

  function requestHosts(delay) {
    if (hostsTimer) return;
    hostsTimer = setTimeout(() => {
      hostsTimer = null;
      loadHosts();
    }, delay === undefined ? 300 : delay);
  }

  async function loadHosts() {
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

  function applyHostList(list) {
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

  // ---------------------------------------------------------------------------------------------
  // Batched rendering: events only update state; the DOM and charts are updated at most
  // ten times a second.

  const dirtyHosts = new Set();
  let flushTimer = null;

  function markDirty(id) {
    dirtyHosts.add(id);
    scheduleFlush();
  }

  function scheduleFlush() {
    if (flushTimer === null) flushTimer = setTimeout(flush, 100);
  }

  function flush() {
    flushTimer = null;
    for (const id of dirtyHosts) {
      const card = state.cards.get(id);
      if (!card || !card.el.isConnected) continue;
      updateCardText(card);
      if (card.visible && !isHidden(els.overview)) {
        ensureCardCharts(card);
        renderCardCharts(card);
      }
    }
    dirtyHosts.clear();
    if (state.needResort || (state.sortKey !== 'name' && Date.now() - state.lastSort > RESORT_INTERVAL_MS)) {
      renderList();
    }
    if (state.detail && state.detail.dirty) renderDetail();
  }

  function isHidden(node) {
    return node.hidden;
  }

  // ---------------------------------------------------------------------------------------------
  // Live events (Server-Sent Events)

  function setConn(s) {
    state.conn = s;
    renderConn();
  }

  function renderConn() {
    const shown = state.paused ? 'paused' : state.conn;
    const labels = { live: 'Live', reconnecting: 'Reconnecting…', paused: 'Paused', connecting: 'Connecting…' };
    els.connection.dataset.state = shown;
    setText(els.connectionLabel, labels[shown] || shown);
    els.connection.title = state.paused
      ? 'Live updates paused (' + (state.conn === 'live' ? 'connected' : 'not connected') + ')'
      : shown === 'live' ? 'Receiving live updates' : 'Not connected to the collector; retrying';
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.es) state.es.close();
    const es = new EventSource('events');
    state.es = es;
    es.onopen = () => {
      if (state.es !== es) return;
      window.hostwatch.connections++;
      state.backoff = 1000;
      const resume = state.interrupted;
      state.interrupted = false;
      setConn('live');
      if (resume) {
        addFeed('system', 'Reconnected to the collector');
        resync();
      } else if (state.everOpened || anyLoaded()) {
        resyncCharts();
      }
      state.everOpened = true;
    };
    es.onerror = () => {
      if (state.es !== es) return;
      if (!state.interrupted && state.everOpened) addFeed('system', 'Lost the connection to the collector; reconnecting…');
      state.interrupted = true;
      setConn('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an error status while the collector restarts): retry ourselves.
        es.close();
        const delay = state.backoff * (0.75 + Math.random() * 0.5);
        state.backoff = Math.min(state.backoff * 2, 15000);
        state.reconnectTimer = setTimeout(connect, delay);
      }
    };
    for (const type of SSE_TYPES) es.addEventListener(type, onEvent);
    es.addEventListener('message', onEvent);
  }

  function anyLoaded() {
    for (const card of state.cards.values()) if (card.loaded) return true;
    return false;
  }

  function onEvent(e) {
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch (_) {
      return;
    }
    if (!ev || typeof ev !== 'object') return;
    const type = typeof ev.type === 'string' ? ev.type : e.type;
    switch (type) {
      case 'sample':
        onSample(ev);
        break;
      case 'agent_connected':
        onConnected(ev);
        break;
      case 'agent_disconnected':
        onDisconnected(ev);
        break;
      case 'status':
        onStatus(ev);
        break;
      case 'notification':
        if (ev.message) addFeed('notification', String(ev.message), ev.ts);
        break;
      case 'lagged':
        // The collector drops a subscriber that falls behind; the reconnect re-fetches history.
        addFeed('system', 'Live updates fell behind; catching up…');
        break;
      case 'shutdown':
        addFeed('system', 'The collector is shutting down');
        break;
      case 'resync':
        // Too much was missed to replay, or the collector's database changed: reload it all.
        addFeed('system', 'Reloading the data');
        resync();
        break;
      default:
        if (type.startsWith('alert')) onAlert(type, ev);
      // Unknown types are ignored: the collector may add more later.
    }
  }

  function hostName(ev) {
    const h = ev.host && state.hosts.get(ev.host);
    return (h && h.hostname) || ev.hostname || ev.host || 'unknown host';
  }

  function onSample(ev) {
    if (state.paused || typeof ev.host !== 'string' || !isNum(ev.ts)) return;
    noteClock(ev.ts);
    const host = state.hosts.get(ev.host);
    if (!host) {
      if (state.hostsLoaded) requestHosts();
      return;
    }
    if (!host.latest || !isNum(host.latest.ts) || ev.ts >= host.latest.ts) {
      host.latest = ev;
      host.last_seen = ev.ts;
    }
    if (ev.hostname && ev.hostname !== host.hostname) {
      host.hostname = ev.hostname;
      state.needResort = true;
    }
    if (host.status !== 'online') {
      host.status = 'online';
      state.needResort = true;
    }
    const card = state.cards.get(ev.host);
    if (card && (card.xs.length || card.loaded || card.cpuChart)) appendCardPoint(card, ev);
    markDirty(ev.host);
    if (state.detail && state.detail.id === ev.host) detailAppend(ev);
  }

  function setStatus(id, status, extra) {
    const host = state.hosts.get(id);
    if (!host) {
      if (state.hostsLoaded) requestHosts();
      return null;
    }
    const changed = host.status !== status;
    host.status = status;
    Object.assign(host, extra || {});
    state.needResort = true;
    markDirty(id);
    if (state.detail && state.detail.id === id) state.detail.dirty = true;
    return changed;
  }

  function onConnected(ev) {
    addFeed('connect', hostName(ev) + ' connected' + (ev.addr ? ' from ' + ev.addr : ''), ev.ts);
    setStatus(ev.host, 'online', { connected_since: isNum(ev.ts) ? ev.ts : Date.now() });
  }

  function onDisconnected(ev) {
    addFeed('disconnect', hostName(ev) + ' disconnected' + (ev.reason ? ': ' + ev.reason : ''), ev.ts);
    setStatus(ev.host, 'offline', { connected_since: null });
  }

  function onStatus(ev) {
    if (!ev.status) return;
    const host = ev.host && state.hosts.get(ev.host);
    const before = host ? host.status : null;
    const extra = ev.status === 'offline' ? { connected_since: null } : {};
    setStatus(ev.host, ev.status, extra);
    if (before !== ev.status) addFeed('status', hostName(ev) + ' is ' + ev.status, ev.ts, ev.status);
  }

  function onAlert(type, ev) {
    let text = ev.message ? String(ev.message) : null;
    if (!text) {
      const what = ev.rule || ev.name || 'alert';
      const st = ev.state || type.replace(/^alert_?/, '') || 'firing';
      text = (ev.host ? hostName(ev) + ': ' : '') + what + ' ' + st;
    }
    const resolved = /resolved/.test(type) || ev.state === 'resolved';
    addFeed(resolved ? 'alert-resolved' : 'alert', text, ev.ts);
  }

  // Re-fetches everything shown, after a reconnect or a resume: no gap in the charts.
  function resync() {
    loadHosts();
    resyncCharts();
  }

  function resyncCharts() {
    for (const card of state.cards.values()) {
      card.loaded = false;
      if (card.visible && card.cpuChart) loadCardHistory(card);
    }
    if (state.detail) loadDetail();
  }

  // ---------------------------------------------------------------------------------------------
  // Activity feed

  function addFeed(kind, text, ts, status) {
    const when = isNum(ts) ? ts : Date.now();
    const li = el('li', { class: 'feed-item', 'data-kind': kind });
    if (status) li.dataset.status = status;
    const time = el('time', { datetime: new Date(when).toISOString(), title: fmtDateTime(when) }, fmtClock(when));
    li.append(time, el('span', { class: 'feed-text' }, text));
    li.dataset.ts = String(when);
    // Newest first, by the event's own time (events replayed after a reconnect may be older).
    let before = els.feed.firstElementChild;
    while (before && Number(before.dataset.ts) > when) before = before.nextElementSibling;
    els.feed.insertBefore(li, before);
    while (els.feed.childElementCount > FEED_MAX) els.feed.lastElementChild.remove();
    els.feedEmpty.hidden = true;
  }

  // ---------------------------------------------------------------------------------------------
  // Collector panel

  async function pollStats() {
    try {
      const s = await getJSON('api/stats', 5000);
      renderStats(s);
      els.statsMessage.hidden = true;
      els.statsPanel.classList.remove('stale');
    } catch (err) {
      els.statsPanel.classList.add('stale');
      els.statsMessage.hidden = false;
      setText(els.statsMessage, 'Collector unreachable; showing the last known values.');
    } finally {
      setTimeout(pollStats, STATS_INTERVAL_MS);
    }
  }

  function renderStats(s) {
    state.lastStats = s;
    const fmt = {
      agents_connected: fmtInt,
      subscribers: fmtInt,
      samples_per_second: (v) => fmtNum(v, 1),
      hosts: fmtInt,
      uptime_seconds: fmtDuration,
      db_size_bytes: fmtBytes,
    };
    for (const dd of els.stats.querySelectorAll('[data-stat]')) {
      const key = dd.dataset.stat;
      setText(dd, (fmt[key] || String)(s[key]));
    }
    setText(els.collectorVersion, s.version ? 'v' + s.version : '');
  }

  // ---------------------------------------------------------------------------------------------
  // Host detail

  const DETAIL_CHARTS = [
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

  const UNIT_FMT = {
    pct: { axis: (v) => v + '%', value: fmtPct },
    bytes: { axis: fmtBytesShort, value: fmtBytes },
    rate: { axis: (v) => fmtBytesShort(v) + '/s', value: fmtRate },
    num: { axis: (v) => String(+v.toFixed(2)), value: (v) => fmtNum(v, 2) },
    celsius: { axis: (v) => v + '°', value: (v) => (isNum(v) ? v.toFixed(1) + ' °C' : DASH) },
  };

  function rangeByKey(key) {
    return RANGES.find((r) => r.key === key) || RANGES[0];
  }

  function stepFor(rangeMs, host) {
    const interval = host && isNum(host.interval_ms) && host.interval_ms > 0 ? host.interval_ms : 1000;
    const wanted = rangeMs / DETAIL_MAX_POINTS;
    if (wanted <= interval) return null; // raw points are few enough
    for (const s of NICE_STEPS_S) if (s * 1000 >= wanted) return s * 1000;
    return Math.ceil(wanted / 1000) * 1000;
  }

  function openHost(id) {
    state.returnFocus = id;
    state.pushedDetail = true;
    location.hash = 'host=' + encodeURIComponent(id);
  }

  function parseHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    return { host: params.get('host'), range: params.get('range') };
  }

  function route() {
    const { host, range } = parseHash();
    if (host) openDetail(host, range);
    else closeDetail();
  }

  function goBack() {
    if (state.pushedDetail && history.length > 1) {
      state.pushedDetail = false;
      history.back();
    } else {
      history.pushState(null, '', location.pathname + location.search);
      route();
    }
  }

  function openDetail(id, rangeKey) {
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

  function closeDetail() {
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

  function destroyDetail() {
    const d = state.detail;
    if (!d) return;
    d.token++;
    for (const panel of d.panels.values()) unmountChart(panel.box, panel.u);
    els.detailCharts.textContent = '';
    els.facts.textContent = '';
    state.detail = null;
  }

  function buildRangeButtons() {
    els.range.textContent = '';
    for (const r of RANGES) {
      const b = el('button', { type: 'button', class: 'btn seg', 'data-range': r.key }, r.label);
      b.setAttribute('aria-pressed', String(state.detail.range.key === r.key));
      b.addEventListener('click', () => setRange(r.key, true));
      els.range.append(b);
    }
  }

  function setRange(key, updateUrl) {
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

  function buildPanels() {
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

  function loadDetail() {
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

  function updateExportLinks() {
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

  function detailAppend(ev) {
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
  function mergeBucket(p, ev) {
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

  function renderDetailHeader() {
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

  function detailXRange() {
    const d = state.detail;
    const last = d.points.length ? d.points[d.points.length - 1].ts : 0;
    const to = Math.max(serverNow(), last);
    return [to - d.range.ms, to];
  }

  function renderDetail() {
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

  // Axis steps for byte values: 1, 2, 4 … 512 times a power of 1024 (0, 2 GiB, 4 GiB, …).
  const BINARY_INCRS = [];
  for (let k = 0; k < 6; k++) {
    for (let m = 1; m < 1024; m *= 2) BINARY_INCRS.push(m * Math.pow(1024, k));
  }

  // Width of a y axis from its longest label.
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size; // avoid endless re-measuring
    let longest = 0;
    for (const v of values || []) longest = Math.max(longest, String(v).length);
    return Math.max(32, Math.ceil(longest * 6.4) + 14);
  }

  function lastValue(col) {
    if (!col) return null;
    for (let i = col.length - 1; i >= 0; i--) if (isNum(col[i])) return col[i];
    return null;
  }

  const hhmm = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
  const hhmmss = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  function timeTicks(u, splits) {
    const span = u.scales.x.max - u.scales.x.min;
    const f = span < 5 * 60 * 1000 ? hhmmss : hhmm;
    return splits.map((v) => f.format(v));
  }

  function coreColor(i, n) {
    const hue = Math.round((210 + (i * 360) / Math.max(n, 1)) % 360);
    return 'hsl(' + hue + ' 70% 55%)';
  }

  function detailOptions(panel, seriesDefs) {
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

  // ---------------------------------------------------------------------------------------------
  // Pause, theme, keyboard

  function setPaused(paused) {
    if (state.paused === paused) return;
    state.paused = paused;
    els.pause.setAttribute('aria-pressed', String(paused));
    setText(els.pauseLabel, paused ? 'Resume' : 'Pause');
    els.pause.title = paused ? 'Resume live updates' : 'Pause live updates';
    renderConn();
    if (!paused) resync(); // fill what was skipped while paused
  }

  function renderThemeButton() {
    const next = root.dataset.theme === 'dark' ? 'light' : 'dark';
    const label = 'Switch to ' + next + ' theme';
    els.theme.setAttribute('aria-label', label);
    els.theme.title = label;
  }

  function setTheme(theme, remember) {
    root.dataset.theme = theme;
    if (remember) {
      try {
        window.localStorage.setItem(THEME_KEY, theme);
      } catch (_) { /* private mode */ }
    }
    renderThemeButton();
    redrawAllCharts();
  }

  // Relative times ("last seen 2m ago") tick on.
  function tick() {
    for (const card of state.cards.values()) {
      const h = state.hosts.get(card.id);
      if (h && h.status !== 'online' && card.el.isConnected) updateCardText(card);
    }
    if (state.detail && !state.detail.dirty) {
      // Keep live ranges sliding even when no sample arrives (an offline host).
      state.detail.dirty = true;
      scheduleFlush();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  function start() {
    const byId = (id) => document.getElementById(id);
    els = {
      main: byId('main'),
      overview: byId('overview'),
      hostList: byId('host-list'),
      hostSummary: byId('host-summary'),
      hostsMessage: byId('hosts-message'),
      filter: byId('filter'),
      sort: byId('sort'),
      sortDir: byId('sort-dir'),
      connection: byId('connection'),
      connectionLabel: document.querySelector('#connection .connection-label'),
      pause: byId('pause'),
      pauseLabel: document.querySelector('#pause .pause-label'),
      theme: byId('theme'),
      detail: byId('detail'),
      detailTitle: byId('detail-title'),
      detailStatus: byId('detail-status'),
      detailMessage: byId('detail-message'),
      detailCharts: byId('detail-charts'),
      facts: byId('facts'),
      range: byId('range'),
      exportCsv: byId('export-csv'),
      exportJson: byId('export-json'),
      back: byId('back'),
      stats: byId('stats'),
      statsPanel: byId('stats').closest('.panel'),
      statsMessage: byId('stats-message'),
      collectorVersion: byId('collector-version'),
      feed: byId('feed'),
      feedEmpty: byId('feed-empty'),
    };

    readChartTheme();
    renderThemeButton();
    renderConn();
    renderSummary(0);

    els.theme.addEventListener('click', () => setTheme(root.dataset.theme === 'dark' ? 'light' : 'dark', true));
    darkQuery.addEventListener('change', () => {
      if (!storedTheme()) setTheme(darkQuery.matches ? 'dark' : 'light', false);
    });
    els.pause.addEventListener('click', () => setPaused(!state.paused));

    els.filter.addEventListener('input', () => {
      state.filter = els.filter.value;
      renderList();
    });
    const renderSortDir = () => {
      const label = state.sortDesc ? 'Sorted descending; sort ascending' : 'Sorted ascending; sort descending';
      els.sortDir.setAttribute('aria-label', label);
      els.sortDir.title = label;
      els.sortDir.dataset.dir = state.sortDesc ? 'desc' : 'asc';
    };
    els.sort.addEventListener('change', () => {
      state.sortKey = els.sort.value;
      state.sortDesc = DEFAULT_DESC[state.sortKey] || false;
      renderSortDir();
      renderList();
    });
    els.sortDir.addEventListener('click', () => {
      state.sortDesc = !state.sortDesc;
      renderSortDir();
      renderList();
    });
    renderSortDir();

    els.back.addEventListener('click', goBack);
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || e.defaultPrevented) return;
      if (state.detail) {
        e.preventDefault();
        goBack();
      } else if (document.activeElement === els.filter && els.filter.value) {
        els.filter.value = '';
        state.filter = '';
        renderList();
      }
    });
    window.addEventListener('hashchange', route);

    loadHosts().then(route);
    connect();
    pollStats();
    setInterval(() => requestHosts(0), HOSTS_REFRESH_MS);
    setInterval(tick, 1000);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
  else start();
})();
