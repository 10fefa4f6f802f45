// The collector's JSON API: requests with a timeout, a concurrency limit for history, and the
// collector's clock estimated from live samples.

import { FETCH_TIMEOUT_MS } from './store.js';
import { isNum } from './format.js';

export async function getJSON(path, timeout) {
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
export function limiter(n) {
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
export const historyQueue = limiter(4);

// A history request: host totals (or `series`) for the charts, everything for an export.
export function historyUrl(id, from, to, step, format, series) {
  let url = 'api/hosts/' + encodeURIComponent(id) + '/history?from=' + Math.floor(from);
  if (to !== null && to !== undefined) url += '&to=' + Math.ceil(to);
  if (step) url += '&step=' + step;
  if (format) url += '&format=' + format;
  else url += '&series=' + (series || 'host');
  return url;
}

// A request that changes something, with the admin token: resolves to { status, body }.
export async function sendAdmin(method, path, token) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const res = await fetch(path, {
      method,
      signal: ctl.signal,
      cache: 'no-store',
      headers: { Accept: 'application/json', Authorization: 'Bearer ' + token },
    });
    let body = null;
    try {
      body = await res.json();
    } catch (_) { /* no JSON body */ }
    return { status: res.status, body };
  } finally {
    clearTimeout(timer);
  }
}

// The collector's clock, estimated from the timestamps of live samples: time ranges are asked
// for and drawn in the collector's time even when the browser's clock is off.
export const clock = { offsets: [], offset: 0 };

export function noteClock(ts) {
  if (!isNum(ts)) return;
  // Every eighth sample is plenty (a thousand hosts send a thousand a second).
  if ((clock.seen = (clock.seen || 0) + 1) % 8 !== 1 && clock.offsets.length >= 31) return;
  clock.offsets.push(ts - Date.now());
  if (clock.offsets.length > 31) clock.offsets.shift();
  const sorted = clock.offsets.slice().sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1];
  // Small differences are network latency and sampling jitter, not a wrong clock.
  clock.offset = Math.abs(median) > 3000 ? median : 0;
}

export function serverNow() {
  return Date.now() + clock.offset;
}
