// The page benchmark's browser side (the `page` phase of `cargo bench -p tests --bench
// collector`): opens the overview of a collector that many hosts send to, and measures for
// HOSTWATCH_BENCH_SECONDS the frames drawn, the longest main-thread tasks and the JS heap.
// Prints one line "PAGE_BENCH {json}" on stdout; measures, never asserts.
//
// Environment: HOSTWATCH_URL (the page), HOSTWATCH_BENCH_HOSTS (hosts to wait for),
// HOSTWATCH_BENCH_SECONDS (the measured window, default 60), CHROMIUM.

import { createHarness, sleep, waitUntil } from './harness.mjs';

const seconds = Number(process.env.HOSTWATCH_BENCH_SECONDS || 60);
const hosts = Number(process.env.HOSTWATCH_BENCH_HOSTS || 1000);
const h = createHarness('page.bench', (seconds + 90) * 1000);

async function main() {
  // Exact heap figures, and a garbage collection before each so they are the live heap.
  const page = await h.launch({ width: 1440, height: 900 }, ['--enable-precise-memory-info', '--js-flags=--expose-gc']);
  await h.step('open the overview', () => page.goto(process.env.HOSTWATCH_URL, { waitUntil: 'load' }));
  await h.step(`wait for ${hosts} host cards`, () => waitUntil(`${hosts} cards`, 60000, () =>
    page.evaluate((n) => document.querySelectorAll('#host-list .host-card').length >= n, hosts), 500));
  await sleep(3000); // the first history requests of the visible cards
  const heap = () => page.evaluate(() => {
    window.gc();
    return performance.memory.usedJSHeapSize;
  });
  const heapStart = await heap();
  await page.evaluate(() => {
    const b = { frames: [], long: [] };
    window.__bench = b;
    const frame = (t) => {
      b.frames.push(t);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) b.long.push(e.duration);
    }).observe({ type: 'longtask' });
  });
  h.log(`measuring for ${seconds} s`);
  await sleep(seconds * 1000);
  const r = await page.evaluate(() => {
    const b = window.__bench;
    const gaps = [];
    for (let i = 1; i < b.frames.length; i++) gaps.push(b.frames[i] - b.frames[i - 1]);
    const span = (b.frames[b.frames.length - 1] - b.frames[0]) / 1000;
    return {
      frames: b.frames.length,
      fps: (b.frames.length - 1) / span,
      gaps,
      long: b.long,
      cards: document.querySelectorAll('#host-list .host-card').length,
      charts: Object.keys(window.hostwatch.charts).length,
    };
  });
  const heapEnd = await heap();
  const sorted = r.gaps.sort((a, b) => a - b);
  const pick = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
  const result = {
    seconds,
    cards: r.cards,
    charts: r.charts,
    fps: r.fps,
    frame_ms: { p50: pick(0.5), p99: pick(0.99), max: sorted.length ? sorted[sorted.length - 1] : null },
    long_tasks: r.long.length,
    longest_task_ms: r.long.length ? Math.max(...r.long) : 0,
    heap_start_bytes: heapStart,
    heap_end_bytes: heapEnd,
  };
  process.stdout.write('PAGE_BENCH ' + JSON.stringify(result) + '\n');
  await h.succeed();
}

main().catch((err) => h.fail(err && err.message ? err.message : String(err)));
