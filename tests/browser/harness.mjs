// What the page's browser tests share: Chromium via playwright-core, bounded waits, the
// browser's problems (console errors, uncaught exceptions, failed requests), lines from the
// driver on stdin, and failing with a screenshot. Each script is driven by a Rust test in
// tests/tests/page.rs; only its protocol lines go to stdout, progress goes to stderr.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${(ms / 1000).toFixed(1)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls `fn` until it returns a truthy value; throws `what` after `ms`.
export async function waitUntil(what, ms, fn, every = 200) {
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

export function cssString(s) {
  return s.replace(/["\\]/g, '\\$&');
}

// One test run: `name` prefixes its log lines, `totalMs` bounds it.
export function createHarness(name, totalMs) {
  const t0 = Date.now();
  const env = process.env;
  const h = {
    browser: null,
    page: null,
    finished: false,
    problems: [],
    ignoreProblems: false, // while the collector is down or restarts, failed requests are expected
    ignoreUntil: 0,
    screenshot: env.HOSTWATCH_SCREENSHOT || '',
  };

  h.log = (msg) => process.stderr.write(`[${name} +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

  h.noteProblem = (text) => {
    const ignored = h.ignoreProblems || Date.now() < h.ignoreUntil;
    h.problems.push({ t: Date.now(), text, ignored });
    if (!ignored) h.log(`browser problem: ${text}`);
  };

  h.assertNoProblems = (where) => {
    const bad = h.problems.filter((p) => !p.ignored);
    if (bad.length) {
      throw new Error(`${where}: the browser reported ${bad.length} problem(s):\n  ` +
        bad.map((p) => p.text).join('\n  '));
    }
  };

  h.saveScreenshot = async (path) => {
    const to = path || h.screenshot;
    if (!to || !h.page) return;
    try {
      await withTimeout(h.page.screenshot({ path: to, fullPage: true, timeout: 5000 }), 6000, 'screenshot');
      h.log(`screenshot saved to ${to}`);
    } catch (err) {
      h.log(`could not save a screenshot: ${err.message}`);
    }
  };

  h.closeBrowser = async () => {
    if (!h.browser) return;
    try {
      await withTimeout(h.browser.close(), 5000, 'closing Chromium');
    } catch (err) {
      h.log(err.message);
    }
  };

  h.fail = async (message) => {
    if (h.finished) return;
    h.finished = true;
    // Whatever happens below, never outlive the budget by more than a few seconds.
    setTimeout(() => process.exit(1), 8000).unref();
    // eslint-disable-next-line no-control-regex
    process.stderr.write(`${name} FAILED: ${String(message).replace(/\x1b\[[0-9;]*m/g, '')}\n`);
    const recent = h.problems.slice(-20);
    if (recent.length) {
      process.stderr.write('browser problems seen (console errors, exceptions, failed requests):\n');
      for (const p of recent) process.stderr.write(`  ${p.ignored ? '(expected) ' : ''}${p.text}\n`);
    }
    await h.saveScreenshot();
    await h.closeBrowser();
    process.exit(1);
  };

  h.succeed = async () => {
    h.finished = true;
    clearTimeout(watchdog);
    await h.closeBrowser();
    process.exit(0);
  };

  const watchdog = setTimeout(() => {
    h.fail(`the test did not finish within ${totalMs / 1000 - 4} s`);
  }, totalMs - 4000);
  process.on('unhandledRejection', (err) => h.fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`));

  h.step = async (what, fn) => {
    h.log(what);
    try {
      return await fn();
    } catch (err) {
      throw new Error(`${what}: ${err.message}`);
    }
  };

  // Lines from the driver, buffered so that none is missed.
  const lines = [];
  let closed = false;
  const waiters = new Set();
  const stdin = createInterface({ input: process.stdin });
  stdin.on('line', (line) => {
    lines.push(line.trim());
    for (const w of waiters) w();
  });
  stdin.on('close', () => {
    closed = true;
    for (const w of waiters) w();
  });
  h.waitForLine = (expected) => new Promise((resolve, reject) => {
    const check = () => {
      const i = lines.indexOf(expected);
      if (i >= 0) {
        lines.splice(0, i + 1);
        waiters.delete(check);
        resolve();
      } else if (closed) {
        waiters.delete(check);
        reject(new Error(`stdin closed before the line "${expected}" arrived`));
      }
    };
    waiters.add(check);
    check();
  });

  // Chromium with one page whose problems are recorded.
  h.launch = async (viewport, extraArgs) => {
    const executablePath = env.CHROMIUM || '/usr/bin/chromium';
    const args = CHROMIUM_ARGS.concat(extraArgs || []);
    h.browser = await h.step(`launch ${executablePath}`, () => withTimeout(
      chromium.launch({ executablePath, headless: true, args, timeout: 15000 }),
      20000, 'launching Chromium'));
    const context = await h.browser.newContext({ viewport: viewport || { width: 1280, height: 900 } });
    const page = await context.newPage();
    h.page = page;
    page.setDefaultTimeout(10000);
    page.setDefaultNavigationTimeout(10000);
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        const loc = msg.location();
        h.noteProblem(`console error: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
      }
    });
    page.on('pageerror', (err) => h.noteProblem(`uncaught exception: ${err.message}`));
    page.on('requestfailed', (req) => {
      const failure = req.failure();
      h.noteProblem(`request failed: ${req.method()} ${req.url()}: ${failure ? failure.errorText : 'unknown error'}`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400) h.noteProblem(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
    });
    return page;
  };

  return h;
}
