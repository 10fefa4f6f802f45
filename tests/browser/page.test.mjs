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

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const T0 = Date.now();
const TOTAL_MS = 60_000;
const env = process.env;
const PAGE_URL = env.HOSTWATCH_URL;
const HOST_ID = env.HOSTWATCH_HOST_ID;
const HOSTNAME = env.HOSTWATCH_HOSTNAME;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = env.HOSTWATCH_SCREENSHOT || '';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser = null;
let page = null;
let finished = false;

function log(msg) {
  process.stderr.write(`[page.test +${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${(ms / 1000).toFixed(1)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls `fn` until it returns a truthy value; throws `what` after `ms`.
async function waitUntil(what, ms, fn, every = 200) {
  const end = Date.now() + ms;
  let lastError = null;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) break;
    try {
      const value = await withTimeout(Promise.resolve().then(fn), Math.max(500, left), what);
      if (value) return value;
      lastError = null;
    } catch (err) {
      lastError = err;
    }
    await sleep(Math.min(every, Math.max(0, end - Date.now())));
  }
  throw new Error(`timed out after ${(ms / 1000).toFixed(1)} s waiting until ${what}` +
    (lastError ? ` (last error: ${lastError.message})` : ''));
}

async function saveScreenshot() {
  if (!SCREENSHOT || !page) return;
  try {
    await withTimeout(page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 5000 }), 6000, 'screenshot');
    log(`screenshot saved to ${SCREENSHOT}`);
  } catch (err) {
    log(`could not save a screenshot: ${err.message}`);
  }
}

async function closeBrowser() {
  if (!browser) return;
  try {
    await withTimeout(browser.close(), 5000, 'closing Chromium');
  } catch (err) {
    log(err.message);
  }
}

async function fail(message) {
  if (finished) return;
  finished = true;
  // Whatever happens below, never outlive the budget by more than a few seconds.
  setTimeout(() => process.exit(1), 8000).unref();
  // eslint-disable-next-line no-control-regex
  process.stderr.write(`page.test FAILED: ${String(message).replace(/\x1b\[[0-9;]*m/g, '')}\n`);
  const recent = problems.slice(-20);
  if (recent.length) {
    process.stderr.write('browser problems seen (console errors, exceptions, failed requests):\n');
    for (const p of recent) process.stderr.write(`  ${p.ignored ? '(during restart) ' : ''}${p.text}\n`);
  }
  await saveScreenshot();
  await closeBrowser();
  process.exit(1);
}

const watchdog = setTimeout(() => {
  fail(`the test did not finish within ${TOTAL_MS / 1000 - 4} s`);
}, TOTAL_MS - 4000);

process.on('unhandledRejection', (err) => fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`));

// ---- stdin: lines from the driver, buffered so that none is missed -----------------------------

const stdinLines = [];
let stdinClosed = false;
const stdinWaiters = new Set();
const stdin = createInterface({ input: process.stdin });
stdin.on('line', (line) => {
  stdinLines.push(line.trim());
  for (const w of stdinWaiters) w();
});
stdin.on('close', () => {
  stdinClosed = true;
  for (const w of stdinWaiters) w();
});

function waitForLine(expected) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const i = stdinLines.indexOf(expected);
      if (i >= 0) {
        stdinLines.splice(0, i + 1);
        stdinWaiters.delete(check);
        resolve();
      } else if (stdinClosed) {
        stdinWaiters.delete(check);
        reject(new Error(`stdin closed before the line "${expected}" arrived`));
      }
    };
    stdinWaiters.add(check);
    check();
  });
}

// ---- browser problems: console errors, uncaught exceptions, failed requests --------------------

const problems = [];
let ignoreProblems = false; // while the collector restarts, failed requests are expected
let ignoreUntil = 0;

function noteProblem(text) {
  const ignored = ignoreProblems || Date.now() < ignoreUntil;
  problems.push({ t: Date.now(), text, ignored });
  if (!ignored) log(`browser problem: ${text}`);
}

function assertNoProblems(where) {
  const bad = problems.filter((p) => !p.ignored);
  if (bad.length) {
    throw new Error(`${where}: the browser reported ${bad.length} problem(s):\n  ` +
      bad.map((p) => p.text).join('\n  '));
  }
}

function cssString(s) {
  return s.replace(/["\\]/g, '\\$&');
}

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

async function step(name, fn) {
  log(name);
  try {
    return await fn();
  } catch (err) {
    throw new Error(`${name}: ${err.message}`);
  }
}

async function main() {
  for (const [name, value] of [['HOSTWATCH_URL', PAGE_URL], ['HOSTWATCH_HOST_ID', HOST_ID], ['HOSTWATCH_HOSTNAME', HOSTNAME]]) {
    if (!value) throw new Error(`the environment variable ${name} is not set`);
  }

  browser = await step(`launch ${CHROMIUM}`, () => withTimeout(
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15000 }),
    20000, 'launching Chromium'));
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.setDefaultNavigationTimeout(10000);
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const loc = msg.location();
      noteProblem(`console error: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (err) => noteProblem(`uncaught exception: ${err.message}`));
  page.on('requestfailed', (req) => {
    const failure = req.failure();
    noteProblem(`request failed: ${req.method()} ${req.url()}: ${failure ? failure.errorText : 'unknown error'}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) noteProblem(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
  });

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

  assertNoProblems('phase 1');
  const connectionsBefore = await page.evaluate(() => (window.hostwatch && window.hostwatch.connections) || 0);
  ignoreProblems = true;
  process.stdout.write('PHASE1 OK\n');

  // ---- restart (done by the driver) ----

  log('waiting for "RESTARTED" on stdin');
  await waitForLine('RESTARTED');

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
  ignoreProblems = false;
  ignoreUntil = Date.now() + 1500;
  await sleep(1500);

  const base = await chartInfo();
  if (!base) throw new Error('phase 2: window.hostwatch.charts[ID] is gone after the reconnect');
  await step('the chart grows again after the restart', () =>
    waitUntil(`the chart has more than ${base.n} points`, Math.max(2000, phase2End - Date.now()), async () => {
      const c = await chartInfo();
      return grew(c, base) ? c : null;
    }, 250));

  assertNoProblems('phase 2 (after the reconnect)');
  process.stdout.write('PHASE2 OK\n');
  await saveScreenshot();
  finished = true;
  clearTimeout(watchdog);
  await closeBrowser();
  process.exit(0);
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
