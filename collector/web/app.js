// hostwatch page: overview of every host, host detail, collector panel and live updates.
//
// Plain JavaScript modules, no build step. Charts are uPlot (a classic script loaded before
// this one). Talks to the collector's JSON API and its Server-Sent Events stream, as described
// in docs/API.md. All URLs are relative, so the page also works behind a reverse proxy under a
// sub-path.

// The store first: its constants are read by the other modules as they load.
import { HOSTS_REFRESH_MS, els, root, state } from './store.js';
import { readChartTheme, redrawAllCharts } from './charts.js';
import { goBack, route } from './detail.js';
import { setText } from './format.js';
import { connect, renderConn, resync } from './live.js';
import { DEFAULT_DESC, loadHosts, renderList, renderSummary, requestHosts, updateCardText } from './overview.js';
import { pollStats } from './panel.js';
import { scheduleFlush } from './render.js';

const { key: THEME_KEY, darkQuery, storedTheme } = window.hostwatchTheme;

// Pause, theme, keyboard

export function setPaused(paused) {
  if (state.paused === paused) return;
  state.paused = paused;
  els.pause.setAttribute('aria-pressed', String(paused));
  setText(els.pauseLabel, paused ? 'Resume' : 'Pause');
  els.pause.title = paused ? 'Resume live updates' : 'Pause live updates';
  renderConn();
  if (!paused) resync(); // fill what was skipped while paused
}

export function renderThemeButton() {
  const next = root.dataset.theme === 'dark' ? 'light' : 'dark';
  const label = 'Switch to ' + next + ' theme';
  els.theme.setAttribute('aria-label', label);
  els.theme.title = label;
}

export function setTheme(theme, remember) {
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
export function tick() {
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

// Start

export function start() {
  const byId = (id) => document.getElementById(id);
  Object.assign(els, {
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
  });


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
