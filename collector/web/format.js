// Formatting of values for display, and small DOM helpers. No state.

import { DASH } from './store.js';
import { serverNow } from './api.js';

// Formatting

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

export function fmtPct(v) {
  return isNum(v) ? v.toFixed(1) + ' %' : DASH;
}

export const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

export function fmtBytes(v) {
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

export function fmtRate(v) {
  return isNum(v) ? fmtBytes(v) + '/s' : DASH;
}

// Short form for chart axes: "1.5 GiB", "200 MiB".
export function fmtBytesShort(v) {
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

export function fmtNum(v, digits) {
  return isNum(v) ? v.toFixed(digits) : DASH;
}

export function fmtInt(v) {
  return isNum(v) ? Math.round(v).toLocaleString() : DASH;
}

export function fmtDuration(seconds) {
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

export function fmtAgo(ms) {
  if (!isNum(ms)) return DASH;
  const diff = Math.max(0, serverNow() - ms) / 1000;
  if (diff < 5) return 'just now';
  return fmtDuration(diff) + ' ago';
}

export function fmtClock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtDateTime(ms) {
  if (!isNum(ms)) return DASH;
  return new Date(ms).toLocaleString([], {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function pct(used, total) {
  return isNum(used) && isNum(total) && total > 0 ? (used / total) * 100 : null;
}

// Filesystem use as df shows it (used / (used + available)), which is what the
// fs_used_percent alert judges; points that lack it (history) fall back to used / size.
export function fsPct(p) {
  return isNum(p.fs_used_percent) ? p.fs_used_percent : pct(p.fs_used_bytes, p.fs_total_bytes);
}

export function level(p) {
  if (!isNum(p)) return '';
  return p >= 90 ? 'crit' : p >= 75 ? 'warn' : 'ok';
}

// Small helpers

export function el(tag, attrs, text) {
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

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Index of the first element whose key is >= value (arr sorted by key).
export function lowerBound(arr, value, key) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((key ? key(arr[mid]) : arr[mid]) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
