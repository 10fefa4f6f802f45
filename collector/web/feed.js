// The activity feed.

import { FEED_MAX, els } from './store.js';
import { el, fmtClock, fmtDateTime, isNum } from './format.js';

// Activity feed

export function addFeed(kind, text, ts, status) {
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
