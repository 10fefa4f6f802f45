// The activity feed: live activity events, and the activity log's past (GET /api/activity), so
// a reload loses nothing; older entries load on demand.

import { FEED_MAX, FEED_PAGE, els, state } from './store.js';
import { getJSON } from './api.js';
import { el, fmtClock, fmtDateTime, isNum } from './format.js';
import { displayName } from './hosts.js';

// How many entries the feed keeps: the live maximum, plus every page the operator asked for.
let feedLimit = FEED_MAX;

// The name to show for an event's host.
export function hostName(ev) {
  const h = ev.host && state.hosts.get(ev.host);
  return (h && displayName(h)) || ev.hostname || ev.host || 'unknown host';
}

// What an activity event says in the feed: { kind, text, status }, or null for events that
// are not activity (samples, stream control).
export function describeActivity(ev) {
  const type = typeof ev.type === 'string' ? ev.type : '';
  switch (type) {
    case 'agent_connected':
      return { kind: 'connect', text: hostName(ev) + ' connected' + (ev.addr ? ' from ' + ev.addr : '') };
    case 'agent_disconnected':
      return { kind: 'disconnect', text: hostName(ev) + ' disconnected' + (ev.reason ? ': ' + ev.reason : '') };
    case 'status':
      return ev.status ? { kind: 'status', text: hostName(ev) + ' is ' + ev.status, status: String(ev.status) } : null;
    case 'notification':
      return ev.message ? { kind: 'notification', text: String(ev.message) } : null;
    case 'host_removed':
      return { kind: 'status', text: hostName(ev) + ' was removed', status: 'offline' };
    default:
      if (!type.startsWith('alert')) return null;
  }
  let text = ev.message ? String(ev.message) : null;
  if (!text) {
    const st = ev.state || type.replace(/^alert_?/, '') || 'firing';
    // A summary is written by the rule and names its host already.
    text = ev.summary ? String(ev.summary) + ' ' + st
      : (ev.host ? hostName(ev) + ': ' : '') + (ev.rule || ev.name || 'alert') + ' ' + st;
  }
  const resolved = /resolved/.test(type) || ev.state === 'resolved';
  return { kind: resolved ? 'alert-resolved' : 'alert', text };
}

// Shows an activity event once (by its id: a live event may also come from the log).
export function addActivity(ev) {
  if (isNum(ev.id)) {
    if (state.feedIds.has(ev.id)) return;
    state.feedIds.add(ev.id);
    // Ids of entries no longer shown are forgotten now and then, so the set stays small.
    if (state.feedIds.size > 4 * feedLimit) {
      state.feedIds = new Set(Array.from(els.feed.querySelectorAll('li[data-id]'), (li) => Number(li.dataset.id)));
      state.feedIds.add(ev.id);
    }
  }
  const d = describeActivity(ev);
  if (d) addFeed(d.kind, d.text, ev.ts, d.status, ev.id);
}

export function addFeed(kind, text, ts, status, id) {
  const when = isNum(ts) ? ts : Date.now();
  const li = el('li', { class: 'feed-item', 'data-kind': kind });
  if (status) li.dataset.status = status;
  if (isNum(id)) li.dataset.id = String(id);
  const time = el('time', { datetime: new Date(when).toISOString(), title: fmtDateTime(when) }, fmtClock(when));
  li.append(time, el('span', { class: 'feed-text' }, text));
  li.dataset.ts = String(when);
  // Newest first, by the event's own time (events replayed after a reconnect may be older).
  let before = els.feed.firstElementChild;
  while (before && Number(before.dataset.ts) > when) before = before.nextElementSibling;
  els.feed.insertBefore(li, before);
  while (els.feed.childElementCount > feedLimit) {
    const last = els.feed.lastElementChild;
    if (last.dataset.id) state.feedIds.delete(Number(last.dataset.id));
    last.remove();
  }
  els.feedEmpty.hidden = true;
}

// Loads the newest page of the activity log (on page load), or the page before the oldest
// entry shown ("Load older").
export async function loadActivity(older) {
  let url = 'api/activity?limit=' + FEED_PAGE;
  // Before the oldest entry still shown (live entries may have pushed older ones out).
  const last = els.feed.querySelector('li[data-id]:last-of-type') || Array.from(els.feed.querySelectorAll('li[data-id]')).pop();
  const oldest = last ? Number(last.dataset.id) : state.feedOldest;
  if (older && isNum(oldest)) url += '&before=' + oldest;
  els.feedMore.disabled = true;
  try {
    const res = await getJSON(url);
    const events = Array.isArray(res.events) ? res.events : [];
    if (older) feedLimit += events.length;
    for (const ev of events) {
      if (!ev || typeof ev !== 'object') continue;
      addActivity(ev);
      if (isNum(ev.id) && (state.feedOldest === null || ev.id < state.feedOldest)) state.feedOldest = ev.id;
    }
    els.feedMore.hidden = !res.more;
  } catch (_) {
    // An older collector without the activity log API, or unreachable: live entries still show.
    els.feedMore.hidden = !older;
  } finally {
    els.feedMore.disabled = false;
  }
}
