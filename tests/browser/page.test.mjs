// Headless-browser test of the collector's page, driven by a Rust black-box test.
//
// Environment:
//   HOSTWATCH_URL         the page, e.g. http://127.0.0.1:PORT/
//   HOSTWATCH_HOST_ID     id of a host that sends samples every second
//   HOSTWATCH_HOSTNAME    its hostname
//   CHROMIUM              Chromium binary (default /usr/bin/chromium)
//   HOSTWATCH_SCREENSHOT  optional: where to save a PNG screenshot (at the end, or on failure)
//
// Protocol with the driver: after phase 1 this prints "PHASE1 OK" on stdout and waits for a line
// "RESTARTED" on stdin (the driver restarts the collector on the same port meanwhile); after
// phase 2 it prints "PHASE2 OK" and exits 0. Any failure: a message on stderr, exit 1. Only those
// two lines go to stdout; progress goes to stderr. The whole run is bounded to 60 s.

import { createHarness, cssString, sleep, waitUntil, withTimeout } from './harness.mjs';

const h = createHarness('page.test', 60_000);
const env = process.env;
const PAGE_URL = env.HOSTWATCH_URL;
const HOST_ID = env.HOSTWATCH_HOST_ID;
const HOSTNAME = env.HOSTWATCH_HOSTNAME;
const log = h.log;
const step = h.step;
let page = null;

// ---- the test -----------------------------------------------------------------------------------

async function chartInfo() {
  return withTimeout(page.evaluate((id) => {
    const hw = window.hostwatch;
    const u = hw && hw.charts && hw.charts[id];
    if (!u || !u.data || !u.data[0]) return null;
    const xs = u.data[0];
    return { n: xs.length, last: xs.length ? xs[xs.length - 1] : null };
  }, HOST_ID), 5000, 'reading window.hostwatch.charts');
}

// Live data arrived: more points, or (when the chart is already at its cap) a newer last point.
function grew(now, before) {
  return now && (now.n > before.n || (now.n >= 500 && now.last > before.last));
}

async function main() {
  for (const [name, value] of [['HOSTWATCH_URL', PAGE_URL], ['HOSTWATCH_HOST_ID', HOST_ID], ['HOSTWATCH_HOSTNAME', HOSTNAME]]) {
    if (!value) throw new Error(`the environment variable ${name} is not set`);
  }

  page = await h.launch();

  // ---- phase 1 ----

  await step(`open ${PAGE_URL}`, () => page.goto(PAGE_URL, { waitUntil: 'load', timeout: 10000 }));

  const hostEl = page.locator(`[data-host-id="${cssString(HOST_ID)}"]`);
  await step(`hostname "${HOSTNAME}" is visible in [data-host-id="${HOST_ID}"]`, () =>
    hostEl.getByText(HOSTNAME, { exact: true }).first().waitFor({ state: 'visible', timeout: 10000 }));

  const first = await step('the host\'s overview CPU chart (window.hostwatch.charts[ID]) has points', () =>
    waitUntil('window.hostwatch.charts[ID].data[0] has points', 10000, async () => {
      const c = await chartInfo();
      return c && c.n > 0 ? c : null;
    }));
  log(`chart has ${first.n} points`);
  await sleep(3000);
  const second = await step('the chart grows with live samples', () =>
    waitUntil(`the chart has more than ${first.n} points`, 4000, async () => {
      const c = await chartInfo();
      return grew(c, first) ? c : null;
    }, 250));
  log(`chart has ${second.n} points`);

  await step('the connection indicator says live', () =>
    page.locator('#connection[data-state="live"]').waitFor({ state: 'attached', timeout: 10000 }));

  await step('open the host detail with the keyboard (focus, Enter)', async () => {
    await hostEl.focus({ timeout: 5000 });
    await page.keyboard.press('Enter');
    await waitUntil('the detail view shows at least 4 charts with data', 10000, () => page.evaluate((id) => {
      const detail = document.getElementById('detail');
      if (!detail || detail.hidden || !location.hash.includes('host=')) return false;
      const canvases = Array.from(detail.querySelectorAll('.uplot canvas'))
        .filter((c) => c.offsetWidth > 0 && c.offsetHeight > 0);
      const hw = window.hostwatch;
      const withData = hw && typeof hw.detailCharts === 'function'
        ? hw.detailCharts().filter((u) => u.data && u.data[0] && u.data[0].length > 0).length
        : canvases.length;
      return canvases.length >= 4 && withData >= 4 && decodeURIComponent(location.hash).includes(id);
    }, HOST_ID));
  });

  await step('Escape returns to the overview with the host focused', async () => {
    await page.keyboard.press('Escape');
    await waitUntil('the overview is shown and the host element has the focus', 5000, () => page.evaluate((id) => {
      const overview = document.getElementById('overview');
      const active = document.activeElement;
      return overview && !overview.hidden && active && active.getAttribute('data-host-id') === id;
    }, HOST_ID));
  });

  await step('the chart keeps growing back on the overview', () =>
    waitUntil(`the chart has more than ${second.n} points`, 5000, async () => {
      const c = await chartInfo();
      return grew(c, second) ? c : null;
    }, 250));

  h.assertNoProblems('phase 1');
  const connectionsBefore = await page.evaluate(() => (window.hostwatch && window.hostwatch.connections) || 0);
  h.ignoreProblems = true;
  process.stdout.write('PHASE1 OK\n');

  // ---- restart (done by the driver) ----

  log('waiting for "RESTARTED" on stdin');
  await h.waitForLine('RESTARTED');

  // ---- phase 2 ----

  const phase2End = Date.now() + 20000;
  await step('the page reconnects by itself (#connection[data-state=live] again)', () =>
    waitUntil('#connection is live again after a reconnect', phase2End - Date.now(), () => page.evaluate((before) => {
      const c = document.getElementById('connection');
      const hw = window.hostwatch;
      const reconnected = !hw || typeof hw.connections !== 'number' || hw.connections > before;
      return Boolean(c && c.dataset.state === 'live' && reconnected);
    }, connectionsBefore), 250));
  // Requests that were already failing when the collector came back may still report.
  h.ignoreProblems = false;
  h.ignoreUntil = Date.now() + 1500;
  await sleep(1500);

  const base = await chartInfo();
  if (!base) throw new Error('phase 2: window.hostwatch.charts[ID] is gone after the reconnect');
  await step('the chart grows again after the restart', () =>
    waitUntil(`the chart has more than ${base.n} points`, Math.max(2000, phase2End - Date.now()), async () => {
      const c = await chartInfo();
      return grew(c, base) ? c : null;
    }, 250));

  h.assertNoProblems('phase 2 (after the reconnect)');
  process.stdout.write('PHASE2 OK\n');
  await h.saveScreenshot();
  await h.succeed();
}

main().catch((err) => h.fail(err && err.message ? err.message : String(err)));
