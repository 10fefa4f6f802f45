// Constants and the one shared state of the page: every module reads and changes this store.

export const root = document.documentElement;

// Constants

export const OVERVIEW_WINDOW_MS = 10 * 60 * 1000; // overview charts show the last 10 minutes
export const OVERVIEW_MAX_POINTS = 1200; // hard cap per overview chart (10 min at 0.5 s)
export const DETAIL_MAX_POINTS = 1500; // the most points a detail range asks for
export const DETAIL_HARD_CAP = 4000; // hard cap of points kept in the detail view
export const FEED_MAX = 100;
export const STATS_INTERVAL_MS = 3000;
export const HOSTS_REFRESH_MS = 30000;
export const RESORT_INTERVAL_MS = 5000;
export const FETCH_TIMEOUT_MS = 10000;
export const RANGES = [
  { key: '15m', label: '15 min', ms: 15 * 60 * 1000 },
  { key: '1h', label: '1 h', ms: 60 * 60 * 1000 },
  { key: '6h', label: '6 h', ms: 6 * 60 * 60 * 1000 },
  { key: '24h', label: '24 h', ms: 24 * 60 * 60 * 1000 },
  { key: '7d', label: '7 d', ms: 7 * 24 * 60 * 60 * 1000 },
  { key: '30d', label: '30 d', ms: 30 * 24 * 60 * 60 * 1000 },
];
export const FEED_PAGE = 50; // activity entries loaded at a time from the activity log
export const ALERTS_REFRESH_MS = 15000;
export const CLIENTS_REFRESH_MS = 10000;
export const DEVICE_REFRESH_MS = 10000; // per-device charts of a live window are refetched this often
export const NICE_STEPS_S = [1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600];
// Named SSE events we listen to; anything else the collector may add later is ignored.
export const SSE_TYPES = [
  'sample', 'agent_connected', 'agent_disconnected', 'status', 'notification',
  'alert', 'alert_firing', 'alert_resolved', 'host_removed', 'lagged', 'shutdown', 'resync',
];
export const STATUS_RANK = { offline: 0, stale: 1, online: 2 };
export const COLORS = {
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
export const DASH = '—';

// State

export const state = {
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
  view: 'cards', // the overview as cards or as a dense table
  alerts: new Map(), // host id -> alerts firing now (from /api/alerts, kept up to date by events)
  series: null, // the collector's table of metrics (GET /api/series): the device charts' list
  feedIds: new Set(), // ids of the activity entries shown, so a replayed event is shown once
  feedOldest: null, // id of the oldest entry loaded from the activity log (null: none yet)
  reconnectAt: 0, // when the next connection attempt starts (the countdown)
  lastHistory: null, // the last history answer of the host view: { from, to, step, points }
};

export const charts = {}; // host id -> uPlot of that host's overview CPU chart
// For tests and debugging: the overview CPU chart of each host, how many times the live stream
// (re)opened, and the charts of the open detail view.
window.hostwatch = {
  charts,
  connections: 0,
  state,
  detailCharts: () => (state.detail ? Array.from(state.detail.panels.values()).map((p) => p.u).filter(Boolean) : []),
  detailChart: (key) => (state.detail && state.detail.panels.get(key) ? state.detail.panels.get(key).u : null),
};

export const els = {}; // filled by start() in app.js
