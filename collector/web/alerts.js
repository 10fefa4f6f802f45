// Alerts firing now, from GET /api/alerts on load and every little while, and from live
// `alert` events in between. The host cards, the table and the host view show them.

import { ALERTS_REFRESH_MS, state } from './store.js';
import { getJSON } from './api.js';
import { loadRecentAlerts } from './detail.js';
import { isNum } from './format.js';
import { markDirty, scheduleFlush } from './render.js';

// The firing alerts of an answer of /api/alerts: a plain list (firing now), or an object with
// the firing ones and recent history.
function firingOf(res) {
  if (Array.isArray(res)) return res;
  if (!res || typeof res !== 'object') return [];
  for (const key of ['firing', 'current', 'active', 'alerts']) if (Array.isArray(res[key])) return res[key];
  return [];
}

// Identifies an alert of a host: its rule and the device it watches, if any.
function alertKey(a) {
  return [a.rule || a.name || '', a.device || a.mount || a.interface || a.disk || a.sensor || ''].join('|');
}

function changed(ids) {
  for (const id of ids) markDirty(id);
  if (state.detail) {
    state.detail.dirty = true;
    scheduleFlush();
  }
}

export async function loadAlerts() {
  try {
    const res = await getJSON('api/alerts');
    const before = new Set(state.alerts.keys());
    state.alerts = new Map();
    for (const a of firingOf(res)) {
      if (!a || typeof a.host !== 'string' || (a.state && a.state !== 'firing')) continue;
      if (!state.alerts.has(a.host)) state.alerts.set(a.host, []);
      state.alerts.get(a.host).push(a);
    }
    if (res && Array.isArray(res.recent)) state.recentAlerts = res.recent;
    changed(new Set([...before, ...state.alerts.keys()]));
  } catch (_) {
    // Kept as they were; the next refresh or event brings them up to date.
  }
}

export function pollAlerts() {
  loadAlerts().finally(() => setTimeout(pollAlerts, ALERTS_REFRESH_MS));
}

// A live `alert` event: firing adds (or updates) the alert, resolved removes it.
export function noteAlert(ev, type) {
  if (typeof ev.host !== 'string') return;
  const resolved = /resolved/.test(type) || ev.state === 'resolved';
  const list = (state.alerts.get(ev.host) || []).filter((a) => alertKey(a) !== alertKey(ev));
  if (!resolved) list.push({ ...ev, since: isNum(ev.since) ? ev.since : ev.ts });
  if (list.length) state.alerts.set(ev.host, list);
  else state.alerts.delete(ev.host);
  changed([ev.host]);
  if (state.detail && state.detail.id === ev.host) loadRecentAlerts();
}
