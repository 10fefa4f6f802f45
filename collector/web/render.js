// Batched rendering: events only update the store; the DOM and charts are updated at most ten
// times a second.

import { RESORT_INTERVAL_MS, els, state } from './store.js';
import { renderDetail } from './detail.js';
import { ensureCardCharts, renderCardCharts, renderList, updateCardText } from './overview.js';

// Batched rendering: events only update state; the DOM and charts are updated at most
// ten times a second.

export const dirtyHosts = new Set();
export let flushTimer = null;

export function markDirty(id) {
  dirtyHosts.add(id);
  scheduleFlush();
}

export function scheduleFlush() {
  if (flushTimer === null) flushTimer = setTimeout(flush, 100);
}

export function flush() {
  flushTimer = null;
  for (const id of dirtyHosts) {
    const card = state.cards.get(id);
    if (!card || !card.el.isConnected) continue;
    updateCardText(card);
    if (card.visible && !isHidden(els.overview)) {
      ensureCardCharts(card);
      renderCardCharts(card);
    }
  }
  dirtyHosts.clear();
  if (state.needResort || (state.sortKey !== 'name' && Date.now() - state.lastSort > RESORT_INTERVAL_MS)) {
    renderList();
  }
  if (state.detail && state.detail.dirty) renderDetail();
}

export function isHidden(node) {
  return node.hidden;
}
