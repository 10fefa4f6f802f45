// The live connection (Server-Sent Events) and what each event changes in the store.

import { SSE_TYPES, els, state } from './store.js';
import { noteClock } from './api.js';
import { detailAppend, loadDetail } from './detail.js';
import { addFeed } from './feed.js';
import { isNum, setText } from './format.js';
import { appendCardPoint, loadCardHistory, loadHosts, requestHosts } from './overview.js';
import { markDirty } from './render.js';

// Live events (Server-Sent Events)

export function setConn(s) {
  state.conn = s;
  renderConn();
}

export function renderConn() {
  const shown = state.paused ? 'paused' : state.conn;
  const labels = { live: 'Live', reconnecting: 'Reconnecting…', paused: 'Paused', connecting: 'Connecting…' };
  els.connection.dataset.state = shown;
  setText(els.connectionLabel, labels[shown] || shown);
  els.connection.title = state.paused
    ? 'Live updates paused (' + (state.conn === 'live' ? 'connected' : 'not connected') + ')'
    : shown === 'live' ? 'Receiving live updates' : 'Not connected to the collector; retrying';
}

export function connect() {
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

export function anyLoaded() {
  for (const card of state.cards.values()) if (card.loaded) return true;
  return false;
}

export function onEvent(e) {
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

export function hostName(ev) {
  const h = ev.host && state.hosts.get(ev.host);
  return (h && h.hostname) || ev.hostname || ev.host || 'unknown host';
}

export function onSample(ev) {
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

export function setStatus(id, status, extra) {
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

export function onConnected(ev) {
  addFeed('connect', hostName(ev) + ' connected' + (ev.addr ? ' from ' + ev.addr : ''), ev.ts);
  setStatus(ev.host, 'online', { connected_since: isNum(ev.ts) ? ev.ts : Date.now() });
}

export function onDisconnected(ev) {
  addFeed('disconnect', hostName(ev) + ' disconnected' + (ev.reason ? ': ' + ev.reason : ''), ev.ts);
  setStatus(ev.host, 'offline', { connected_since: null });
}

export function onStatus(ev) {
  if (!ev.status) return;
  const host = ev.host && state.hosts.get(ev.host);
  const before = host ? host.status : null;
  const extra = ev.status === 'offline' ? { connected_since: null } : {};
  setStatus(ev.host, ev.status, extra);
  if (before !== ev.status) addFeed('status', hostName(ev) + ' is ' + ev.status, ev.ts, ev.status);
}

export function onAlert(type, ev) {
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
export function resync() {
  loadHosts();
  resyncCharts();
}

export function resyncCharts() {
  for (const card of state.cards.values()) {
    card.loaded = false;
    if (card.visible && card.cpuChart) loadCardHistory(card);
  }
  if (state.detail) loadDetail();
}
