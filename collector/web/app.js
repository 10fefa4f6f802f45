// hostwatch page: overview of every host, host detail, collector panel and live updates.
//
// Plain JavaScript modules, no build step. Charts are uPlot (a classic script loaded before
// this one). Talks to the collector's JSON API and its Server-Sent Events stream, as described
// in docs/API.md. All URLs are relative, so the page also works behind a reverse proxy under a
// sub-path.

// The store first: its constants are read by the other modules as they load.
import { HOSTS_REFRESH_MS, els, root, state } from './store.js';
import { pollAlerts } from './alerts.js';
import { getJSON } from './api.js';
import { readChartTheme, redrawAllCharts } from './charts.js';
import { bindDetailControls, goBack, rebuildDetail, route, zoomOut } from './detail.js';
import { loadActivity } from './feed.js';
import { setText } from './format.js';
import { hostAlerts } from './hosts.js';
import { connect, reconnectNow, renderConn, resync } from './live.js';
import { DEFAULT_DESC, buildTableHead, loadHosts, renderList, renderSortState, renderSummary, requestHosts, setView, sortBy } from './overview.js';
import { pollClients, pollClientsOnce, pollStats } from './panel.js';
import { bindPlaybackControls, playbackKey } from './playback.js';
import { markDirty, scheduleFlush } from './render.js';

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

// Relative times ("last seen 2m ago") and the reconnect countdown tick on.
export function tick() {
  for (const card of state.cards.values()) {
    const h = state.hosts.get(card.id);
    if (h && h.status !== 'online') markDirty(card.id);
  }
  if (state.conn === 'waiting') renderConn();
  if (state.detail && !state.detail.dirty && !state.paused) {
    // Keep live ranges sliding even when no sample arrives (an offline host).
    state.detail.dirty = true;
    scheduleFlush();
  }
}

// The collector's table of metrics: the host view's device charts are built from it.
async function loadSeries() {
  try {
    state.series = await getJSON('api/series');
    if (state.detail) rebuildDetail();
  } catch (_) {
    setTimeout(loadSeries, 5000);
  }
}

export function start() {
  const byId = (id) => document.getElementById(id);
  Object.assign(els, {
    main: byId('main'),
    overview: byId('overview'),
    hostList: byId('host-list'),
    hostTable: byId('host-table'),
    hostSummary: byId('host-summary'),
    hostsMessage: byId('hosts-message'),
    filter: byId('filter'),
    sort: byId('sort'),
    sortDir: byId('sort-dir'),
    viewButtons: byId('view'),
    connection: byId('connection'),
    connectionLabel: document.querySelector('#connection .connection-label'),
    reconnect: byId('reconnect'),
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
    customRange: byId('custom-range'),
    customFrom: byId('custom-from'),
    customTo: byId('custom-to'),
    zoomOut: byId('zoom-out'),
    play: byId('play'),
    playback: byId('playback'),
    pbToggle: byId('pb-toggle'),
    pbBack: byId('pb-back'),
    pbForward: byId('pb-forward'),
    pbSpeed: byId('pb-speed'),
    pbScrubber: byId('pb-scrubber'),
    pbTime: byId('pb-time'),
    pbExit: byId('pb-exit'),
    exportCsv: byId('export-csv'),
    exportJson: byId('export-json'),
    removeHost: byId('remove-host'),
    removeDialog: byId('remove-dialog'),
    removeForm: byId('remove-form'),
    removeName: byId('remove-name'),
    removeToken: byId('remove-token'),
    removeError: byId('remove-error'),
    hostAlerts: byId('host-alerts'),
    hostAlertsFiring: byId('host-alerts-firing'),
    hostAlertsRecent: byId('host-alerts-recent'),
    back: byId('back'),
    stats: byId('stats'),
    statsPanel: byId('stats').closest('.panel'),
    statsMessage: byId('stats-message'),
    collectorVersion: byId('collector-version'),
    clients: byId('clients'),
    clientsAgents: byId('clients-agents'),
    clientsViewers: byId('clients-viewers'),
    feed: byId('feed'),
    feedEmpty: byId('feed-empty'),
    feedMore: byId('feed-more'),
  });

  readChartTheme();
  renderThemeButton();
  renderConn();
  renderSummary(0);
  buildTableHead();

  els.theme.addEventListener('click', () => setTheme(root.dataset.theme === 'dark' ? 'light' : 'dark', true));
  darkQuery.addEventListener('change', () => {
    if (!storedTheme()) setTheme(darkQuery.matches ? 'dark' : 'light', false);
  });
  els.pause.addEventListener('click', () => setPaused(!state.paused));
  els.reconnect.addEventListener('click', reconnectNow);

  els.filter.addEventListener('input', () => {
    state.filter = els.filter.value;
    renderList();
  });
  els.sort.addEventListener('change', () => sortBy(els.sort.value, DEFAULT_DESC[els.sort.value] || false));
  els.sortDir.addEventListener('click', () => sortBy(state.sortKey, !state.sortDesc));
  renderSortState();
  for (const b of els.viewButtons.querySelectorAll('button')) b.addEventListener('click', () => setView(b.dataset.view));
  let view = 'cards';
  try {
    view = window.localStorage.getItem('hostwatch.view') || 'cards';
  } catch (_) { /* private mode */ }
  setView(view);

  els.feedMore.addEventListener('click', () => loadActivity(true));
  els.clients.addEventListener('toggle', () => {
    if (els.clients.open) pollClientsOnce();
  });

  els.back.addEventListener('click', goBack);
  bindDetailControls();
  bindPlaybackControls();
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return;
    if (e.key === 'Escape') {
      if (els.removeDialog.open) return; // the dialog closes itself
      if (state.detail) {
        e.preventDefault();
        goBack();
      } else if (document.activeElement === els.filter && els.filter.value) {
        els.filter.value = '';
        state.filter = '';
        renderList();
      }
      return;
    }
    if (state.detail) playbackKey(e);
  });
  window.addEventListener('hashchange', route);

  loadSeries();
  loadHosts().then(route);
  connect();
  pollStats();
  pollAlerts();
  pollClients();
  loadActivity(false);
  setInterval(() => requestHosts(0), HOSTS_REFRESH_MS);
  setInterval(tick, 1000);
  route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
else start();
