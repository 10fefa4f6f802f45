// The collector panel: counters from /api/stats, and the connected agents and viewers from
// /api/clients (fetched while that list is open).

import { CLIENTS_REFRESH_MS, STATS_INTERVAL_MS, els, state } from './store.js';
import { getJSON } from './api.js';
import { el, fmtAgo, fmtBytes, fmtDuration, fmtInt, fmtNum, setText } from './format.js';

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
    samples_total: fmtInt,
  };
  for (const dd of els.stats.querySelectorAll('[data-stat]')) {
    const key = dd.dataset.stat;
    setText(dd, (fmt[key] || String)(s[key]));
  }
  setText(els.collectorVersion, s.version ? 'v' + s.version : '');
}

// One line per client: who, over what, since when, how much.
function clientItem(c, agent) {
  const host = agent && c.host && state.hosts.get(c.host);
  const who = agent ? (host && host.hostname) || c.host || c.addr : c.addr;
  const parts = [c.transport, 'since ' + fmtAgo(c.since), fmtInt(c.count) + (agent ? ' samples' : ' events')];
  const li = el('li', null);
  li.append(el('span', { class: 'client-who' }, String(who || '—')), el('span', { class: 'muted' }, ' ' + parts.join(' · ')));
  return li;
}

function renderList(ul, list, agent) {
  ul.textContent = '';
  if (!list.length) ul.append(el('li', { class: 'muted' }, 'none'));
  for (const c of list) if (c && typeof c === 'object') ul.append(clientItem(c, agent));
}

export function pollClients() {
  (els.clients.open ? pollClientsOnce() : Promise.resolve()).finally(() => setTimeout(pollClients, CLIENTS_REFRESH_MS));
}

export async function pollClientsOnce() {
  try {
    const res = await getJSON('api/clients', 5000);
    renderList(els.clientsAgents, Array.isArray(res.agents) ? res.agents : [], true);
    renderList(els.clientsViewers, Array.isArray(res.subscribers) ? res.subscribers : [], false);
  } catch (_) { /* the stats message says the collector is unreachable */ }
}
