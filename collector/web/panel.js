// The collector panel: counters from /api/stats.

import { STATS_INTERVAL_MS, els, state } from './store.js';
import { getJSON } from './api.js';
import { fmtBytes, fmtDuration, fmtInt, fmtNum, setText } from './format.js';

// Collector panel

export async function pollStats() {
  try {
    const s = await getJSON('api/stats', 5000);
    renderStats(s);
    els.statsMessage.hidden = true;
    els.statsPanel.classList.remove('stale');
  } catch (err) {
    els.statsPanel.classList.add('stale');
    els.statsMessage.hidden = false;
    setText(els.statsMessage, 'Collector unreachable; showing the last known values.');
  } finally {
    setTimeout(pollStats, STATS_INTERVAL_MS);
  }
}

export function renderStats(s) {
  state.lastStats = s;
  const fmt = {
    agents_connected: fmtInt,
    subscribers: fmtInt,
    samples_per_second: (v) => fmtNum(v, 1),
    hosts: fmtInt,
    uptime_seconds: fmtDuration,
    db_size_bytes: fmtBytes,
  };
  for (const dd of els.stats.querySelectorAll('[data-stat]')) {
    const key = dd.dataset.stat;
    setText(dd, (fmt[key] || String)(s[key]));
  }
  setText(els.collectorVersion, s.version ? 'v' + s.version : '');
}
