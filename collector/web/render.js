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
  // Only what is on screen is written: with a thousand hosts, rewriting every card each time
  // its host sends would keep the browser busy laying out the page. A card or row scrolled into
  // view is marked dirty then (overview.js), and brought up to date.
  const shown = !isHidden(els.overview);
  for (const id of dirtyHosts) {
    const card = state.cards.get(id);
    if (!card || !(state.view === 'table' ? card.row && card.row.el.isConnected : card.el.isConnected)) continue;
    if (state.view === 'table' ? card.rowVisible && shown : card.visible && shown) updateCardText(card);
    if (card.visible && shown) {
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
