// What the page derives from a host object: the name to show (with the host id where two
// hosts share a hostname), the status to show, its fullest mount and its firing alerts.

import { state } from './store.js';
import { isNum, pct } from './format.js';
import { statusKnown } from './live.js';

// How many hosts have each hostname; recounted when the host list or a hostname changes.
const nameCounts = new Map();

export function recountNames() {
  nameCounts.clear();
  for (const h of state.hosts.values()) {
    const name = h.hostname || h.id;
    nameCounts.set(name, (nameCounts.get(name) || 0) + 1);
  }
}

// Whether another host has the same hostname: then the page shows the host id too.
export function nameCollides(host) {
  return (nameCounts.get(host.hostname || host.id) || 0) > 1;
}

// The hostname, with the host id where two hosts share it.
export function displayName(host) {
  const name = host.hostname || host.id;
  return nameCollides(host) && name !== host.id ? name + ' (' + host.id + ')' : name;
}

// The status to show: "unknown" while the collector is unreachable.
export function displayStatus(host) {
  return statusKnown() ? host.status || 'unknown' : 'unknown';
}

// The mount closest to full (as df counts it), from the host's newest filesystems; null when
// the host reported none.
export function fullestMount(host) {
  let best = null;
  for (const fs of Array.isArray(host.filesystems) ? host.filesystems : []) {
    if (!fs) continue;
    const p = isNum(fs.used_percent) ? fs.used_percent : pct(fs.used_bytes, fs.total_bytes);
    if (isNum(p) && (!best || p > best.percent)) best = { fs, percent: p };
  }
  return best;
}

// Alerts firing now for a host.
export function hostAlerts(id) {
  return state.alerts.get(id) || [];
}

// One line for an alert: its summary, or rule and value.
export function alertText(a) {
  const value = isNum(a.value) ? ' (' + (+a.value.toFixed(2)) + ')' : '';
  return (a.summary || a.rule || a.name || 'alert') + value;
}
