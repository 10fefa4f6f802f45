// The live connection (Server-Sent Events) and what each event changes in the store.

import { SSE_TYPES, els, state } from './store.js';
import { loadAlerts, noteAlert } from './alerts.js';
import { noteClock } from './api.js';
import { detailAppend, loadDetail } from './detail.js';
import { addActivity, addFeed, loadActivity } from './feed.js';
import { isNum, setText } from './format.js';
import { recountNames } from './hosts.js';
import { appendCardPoint, forgetHost, loadCardHistory, loadHosts, requestHosts } from './overview.js';
import { markDirty } from './render.js';

// The connection is one explicit state machine:
//
//   connecting --open--> live --error--> waiting --countdown or "reconnect now"--> connecting
//        \--------------------error-------^
//
// The EventSource's own retry is not used: on an error the page closes it and waits a backoff
// (1 s doubling to 15 s, with jitter) that it shows as a countdown, so the operator sees when
// the next attempt is and can start it now. While waiting after a lost connection, host
// statuses are unknown. Pause is shown over any of these states; it stops applying samples.

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 15000;

export function setConn(s) {
  const was = state.conn;
  state.conn = s;
  renderConn();
  // Host badges say "unknown" while the collector is unreachable, and the real status again
  // once it is back.
  if ((was === 'live') !== (s === 'live')) for (const id of state.hosts.keys()) markDirty(id);
}

// Whether host statuses shown are known: not while the collector is unreachable.
export function statusKnown() {
  return state.conn === 'live' || !state.interrupted;
}

export function renderConn() {
  const shown = state.paused ? 'paused' : state.conn;
  let label = { live: 'Live', paused: 'Paused', connecting: state.interrupted ? 'Reconnecting…' : 'Connecting…' }[shown];
  if (shown === 'waiting') {
    const left = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
    label = 'Reconnecting in ' + left + ' s';
  }
  els.connection.dataset.state = shown === 'waiting' ? 'reconnecting' : shown;
  setText(els.connectionLabel, label || shown);
  els.reconnect.hidden = state.conn !== 'waiting';
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
  setConn('connecting');
  es.onopen = () => {
    if (state.es !== es) return;
    window.hostwatch.connections++;
    state.backoff = BACKOFF_MIN_MS;
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
    if (!state.interrupted && state.everOpened) addFeed('system', 'Lost the connection to the collector');
    state.interrupted = true;
    es.close();
    state.es = null;
    const delay = Math.round(state.backoff * (0.75 + Math.random() * 0.5));
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    state.reconnectAt = Date.now() + delay;
    state.reconnectTimer = setTimeout(connect, delay);
    setConn('waiting');
  };
  for (const type of SSE_TYPES) es.addEventListener(type, onEvent);
  es.addEventListener('message', onEvent);
}

// "Reconnect now": skips the rest of the countdown.
export function reconnectNow() {
  if (state.conn === 'waiting') connect();
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
      addActivity(ev);
      setStatus(ev.host, 'online', { connected_since: isNum(ev.ts) ? ev.ts : Date.now() });
      break;
    case 'agent_disconnected':
      addActivity(ev);
      setStatus(ev.host, 'offline', { connected_since: null });
      break;
    case 'status':
      onStatus(ev);
      break;
    case 'notification':
      addActivity(ev);
      break;
    case 'host_removed':
      addActivity(ev);
      if (typeof ev.host === 'string') forgetHost(ev.host);
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
      if (type.startsWith('alert')) {
        addActivity(ev);
        noteAlert(ev, type);
      }
    // Unknown types are ignored: the collector may add more later.
  }
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
    recountNames();
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

export function onStatus(ev) {
  if (!ev.status) return;
  const host = ev.host && state.hosts.get(ev.host);
  const before = host ? host.status : null;
  const extra = ev.status === 'offline' ? { connected_since: null } : {};
  setStatus(ev.host, ev.status, extra);
  // A replayed status the page already shows is not news; one from the log is kept by id.
  if (before !== ev.status) addActivity(ev);
  else if (isNum(ev.id)) state.feedIds.add(ev.id);
}

// Re-fetches everything shown, after a reconnect or a resume: no gap in the charts.
export function resync() {
  loadHosts();
  resyncCharts();
  // What happened while the page was not listening: the activity log has it (ids dedupe).
  loadActivity(false);
  loadAlerts();
}

export function resyncCharts() {
  for (const card of state.cards.values()) {
    card.loaded = false;
    if (card.visible && card.cpuChart) loadCardHistory(card);
  }
  if (state.detail) loadDetail();
}
