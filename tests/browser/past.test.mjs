// Headless-browser test of the page's past and its host management, driven by
// tests/tests/page.rs (`the_page_navigates_the_past_plays_it_back_and_manages_hosts`).
//
// Environment:
//   HOSTWATCH_URL        the page, e.g. http://127.0.0.1:PORT/
//   HOSTWATCH_ADMIN      the collector's admin token
//   HOSTWATCH_A, _B      ids of two hosts with the same hostname; A has three hours of history
//                        with two mounts, B has an alert firing
//   HOSTWATCH_GONE       id of an offline host with a hostile hostname, to be removed
//   HOSTWATCH_GONE_NAME  its hostname
//   HOSTWATCH_BROADCAST  the (hostile) broadcast message sent before the page opened
//   CHROMIUM, HOSTWATCH_SCREENSHOT as in page.test.mjs
//
// Protocol: at the end this prints "READY_FOR_OUTAGE" and waits for "DOWN" on stdin (the driver
// stops the collector meanwhile), checks the reconnect countdown, prints "DONE" and exits 0.

import { cssString, createHarness, sleep, waitUntil } from './harness.mjs';

const h = createHarness('past.test', 100_000);
const env = process.env;
const URL_ = env.HOSTWATCH_URL;
const A = env.HOSTWATCH_A;
const B = env.HOSTWATCH_B;
const GONE = env.HOSTWATCH_GONE;
const GONE_NAME = env.HOSTWATCH_GONE_NAME;
const BROADCAST = env.HOSTWATCH_BROADCAST;
const ADMIN = env.HOSTWATCH_ADMIN;

const card = (id) => `#host-list [data-host-id="${cssString(id)}"]`;

async function main() {
  for (const [name, value] of Object.entries({ URL_, A, B, GONE, GONE_NAME, BROADCAST, ADMIN })) {
    if (!value) throw new Error(`the environment variable for ${name} is not set`);
  }
  const page = await h.launch();
  const ev = (fn, arg) => page.evaluate(fn, arg);

  await h.step(`open ${URL_}`, () => page.goto(URL_, { waitUntil: 'load' }));
  await h.step('three probe hosts show', () => waitUntil('cards of A, B and the offline host', 10000, () =>
    ev((ids) => ids.every((id) => document.querySelector(`#host-list [data-host-id="${CSS.escape(id)}"]`)), [A, B, GONE])));

  await h.step('two hosts with the same hostname show their host ids', () => waitUntil('both ids shown', 5000, () =>
    ev(([a, b]) => {
      const id = (x) => {
        const e = document.querySelector(`#host-list [data-host-id="${CSS.escape(x)}"] .host-id`);
        return e && !e.hidden ? e.textContent : null;
      };
      return id(a) === a && id(b) === b;
    }, [A, B])));

  const hostileChecks = async (where) => {
    const r = await ev(([gone, goneName, message]) => {
      const name = document.querySelector(`#host-list [data-host-id="${CSS.escape(gone)}"] .host-name`);
      const feed = document.getElementById('feed').textContent;
      return {
        name: name ? name.textContent : null,
        img: document.querySelectorAll('img').length,
        xss: window.__xss === undefined && !document.getElementById('xss-b'),
        feed: feed.includes(message),
        wanted: goneName,
      };
    }, [GONE, GONE_NAME, BROADCAST]);
    if (r.name !== r.wanted) throw new Error(`${where}: the hostile hostname shows as ${JSON.stringify(r.name)}`);
    if (r.img !== 0 || !r.xss) throw new Error(`${where}: markup from a host name or a broadcast was run`);
    return r.feed;
  };
  await h.step('hostile names and broadcasts render as text; the broadcast is in the feed', () =>
    waitUntil('the broadcast text is in the feed', 5000, () => hostileChecks('first load')));

  await h.step('the firing alert shows on the card', () => waitUntil('card B has an alert badge', 15000, () =>
    ev((b) => {
      const c = document.querySelector(`#host-list [data-host-id="${CSS.escape(b)}"]`);
      const badge = c && c.querySelector('.alert-badge');
      return c && c.dataset.alerts !== '0' && badge && !badge.hidden && /alert/.test(badge.textContent);
    }, B)));

  // A reload aborts the page's open event stream: that failed request is expected.
  const reload = async () => {
    h.ignoreProblems = true;
    await page.reload({ waitUntil: 'load' });
    h.ignoreProblems = false;
    h.ignoreUntil = Date.now() + 500;
  };
  await h.step('reload: the alert and the feed are still there', async () => {
    await reload();
    await waitUntil('card B has its alert badge after the reload', 10000, () => ev((b) => {
      const c = document.querySelector(`#host-list [data-host-id="${CSS.escape(b)}"]`);
      return c && c.dataset.alerts !== '0';
    }, B));
    await waitUntil('the broadcast is in the feed after the reload', 10000, () => hostileChecks('after the reload'));
  });

  await h.step('the table view lists every host and sorts by a column', async () => {
    await page.click('#view [data-view="table"]');
    const hosts = await ev(() => fetch('api/hosts').then((r) => r.json()).then((l) => l.length));
    await waitUntil(`${hosts} rows`, 5000, () => ev((n) => document.querySelectorAll('#host-table tbody tr').length === n, hosts));
    await page.click('#host-table th[data-sort="disk"] button');
    const order = await ev(() => Array.from(document.querySelectorAll('#host-table tbody tr'), (tr) => tr.dataset.hostId));
    const sort = await ev(() => document.querySelector('#host-table th[data-sort="disk"]').getAttribute('aria-sort'));
    // A's /data mount is 90 % full: the fullest of all, so first when sorted descending.
    if (sort !== 'descending' || order[0] !== A) throw new Error(`sorted ${sort}: ${order.join(', ')}`);
    await page.click('#view [data-view="cards"]');
  });

  const openA = async () => {
    await page.evaluate((a) => { location.hash = 'host=' + encodeURIComponent(a); }, A);
    await waitUntil('the detail charts have data', 10000, () => ev(() => {
      const u = window.hostwatch.detailChart('cpu');
      return u && u.data[0].length > 10;
    }));
  };
  await h.step('host view: the per-mount chart shows both mounts', async () => {
    await openA();
    await waitUntil('the filesystem chart has "/" and "/data"', 15000, () => ev(() => {
      const u = window.hostwatch.detailChart('dev-fs');
      if (!u) return false;
      const labels = u.series.slice(1).map((s) => s.label).sort();
      return labels.join(',') === '/,/data' && u.data[1].some((v) => v !== null);
    }));
  });

  const scales = () => ev(() => window.hostwatch.detailCharts().map((u) => [u.scales.x.min, u.scales.x.max]));
  const hashWindow = () => ev(() => {
    const p = new URLSearchParams(location.hash.slice(1));
    return p.has('from') ? [Number(p.get('from')), Number(p.get('to'))] : null;
  });
  let zoomed;
  await h.step('drag to zoom: the URL and every chart follow', async () => {
    const box = await page.locator('[data-chart="cpu"] .u-over').boundingBox();
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.4, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, y, { steps: 8 });
    await page.mouse.up();
    zoomed = await waitUntil('the URL has the zoomed window', 5000, hashWindow);
    await waitUntil('every chart shows the zoomed window', 5000, async () => {
      const s = await scales();
      return s.length >= 4 && s.every(([min, max]) => min === zoomed[0] && max === zoomed[1]);
    });
    if (await page.locator('#zoom-out').isHidden()) throw new Error('no way back from the zoom');
  });

  await h.step('the CSV export has exactly the zoomed window\'s rows', async () => {
    const r = await ev(async ([a, win]) => {
      const href = document.getElementById('export-csv').getAttribute('href');
      const csv = await fetch(href).then((x) => x.text());
      const rows = csv.trim().split('\n').slice(1).map((l) => Number(l.split(',')[0]));
      const json = await fetch(`api/hosts/${encodeURIComponent(a)}/history?from=${win[0]}&to=${win[1]}&series=host`).then((x) => x.json());
      return { href, rows, expected: json.points.length };
    }, [A, zoomed]);
    if (!r.rows.length || r.rows.length !== r.expected) throw new Error(`${r.rows.length} rows, the window has ${r.expected} (${r.href})`);
    const outside = r.rows.filter((ts) => ts < zoomed[0] || ts >= zoomed[1]);
    if (outside.length) throw new Error(`rows outside the window: ${outside.slice(0, 3).join(', ')}`);
  });

  await h.step('reloading the zoomed URL shows the same window', async () => {
    await reload();
    await waitUntil('every chart shows the zoomed window after the reload', 10000, async () => {
      const s = await scales();
      return s.length >= 4 && s.every(([min, max]) => min === zoomed[0] && max === zoomed[1]);
    });
  });

  const lastHistory = () => ev(() => window.hostwatch.state.lastHistory);
  await h.step('7 d loads from the rollups', async () => {
    await page.click('#range [data-range="7d"]');
    const got = await waitUntil('a 7-day answer', 10000, async () => {
      const l = await lastHistory();
      return l && l.to - l.from === 7 * 86400000 ? l : null;
    });
    if (!(got.step >= 60000 && got.step % 60000 === 0)) throw new Error(`step ${got.step}: not whole minutes`);
    if (!got.points) throw new Error('no buckets for the three hours of history');
    if ((await ev(() => location.hash)).indexOf('range=7d') < 0) throw new Error('the URL does not say 7d');
  });

  await h.step('a custom range (the last two days) loads from the rollups', async () => {
    await ev(() => {
      const pad = (n) => String(n).padStart(2, '0');
      const local = (ms) => {
        const t = new Date(ms);
        return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
      };
      document.getElementById('custom-from').value = local(Date.now() - 2 * 86400000);
      document.getElementById('custom-to').value = local(Date.now());
      document.querySelector('#custom-range button[type="submit"]').click();
    });
    const got = await waitUntil('a two-day answer', 10000, async () => {
      const l = await lastHistory();
      return l && Math.abs(l.to - l.from - 2 * 86400000) < 2000 ? l : null;
    });
    if (!(got.step >= 60000 && got.step % 60000 === 0) || !got.points) throw new Error(`step ${got.step}, ${got.points} points`);
    if (!(await hashWindow())) throw new Error('the URL does not hold the custom window');
  });

  await h.step('playback at 10× moves the scrubber and the charts, pauses, steps and returns to live', async () => {
    await page.click('#range [data-range="15m"]');
    await waitUntil('the live window', 5000, async () => !(await hashWindow()));
    await page.click('#play');
    await waitUntil('the playback bar', 5000, () => ev(() => !document.getElementById('playback').hidden));
    await page.click('#pb-speed [data-speed="10"]');
    await waitUntil('playback data loaded', 5000, () => ev(() => window.hostwatch.detailChart('cpu').data[0].length > 5));
    const p0 = await ev(() => ({ pb: window.hostwatch.playback(), now: Date.now() }));
    await sleep(2000);
    const p1 = await ev(() => ({
      pb: window.hostwatch.playback(),
      now: Date.now(),
      scrubber: Number(document.getElementById('pb-scrubber').value),
      xmax: window.hostwatch.detailChart('cpu').scales.x.max,
    }));
    const rate = (p1.pb.t - p0.pb.t) / (p1.now - p0.now);
    h.log(`playback moved ${((p1.pb.t - p0.pb.t) / 1000).toFixed(1)} s in ${((p1.now - p0.now) / 1000).toFixed(1)} s (${rate.toFixed(1)}×)`);
    if (!(rate > 4 && rate < 16)) throw new Error(`playback at 10× moved at ${rate.toFixed(1)}×`);
    if (Math.abs(p1.scrubber - p1.pb.t) > 2000) throw new Error(`the scrubber says ${p1.scrubber}, playback ${p1.pb.t}`);
    // The charts redraw on the page's own tick, which a loaded machine may delay by a frame or
    // two: the charts must catch up with the playback time within a few samples, not at once.
    const follows = async () => {
      const c = await ev(() => ({ t: window.hostwatch.playback().t, xmax: window.hostwatch.detailChart('cpu').scales.x.max }));
      return Math.abs(c.xmax - c.t) <= 2000 + 10 * 200;
    };
    if (!(Math.abs(p1.xmax - p1.pb.t) <= 2000 + 10 * 200) && !(await waitUntil('the charts at the playback time', 3000, follows).catch(() => false))) {
      throw new Error('the charts do not follow the playback time');
    }
    await page.keyboard.press('Space');
    const paused = await ev(() => window.hostwatch.playback());
    await sleep(600);
    const still = await ev(() => window.hostwatch.playback());
    if (paused.playing || still.t !== paused.t) throw new Error('space did not pause the playback');
    await page.keyboard.press('ArrowRight');
    const stepped = await ev(() => window.hostwatch.playback());
    if (!(stepped.t > still.t)) throw new Error('the right arrow did not step forward');
    await page.click('#pb-exit');
    await waitUntil('back to live', 5000, async () => {
      const r = await ev(() => ({
        pb: window.hostwatch.playback(),
        hidden: document.getElementById('playback').hidden,
        xmax: window.hostwatch.detailChart('cpu') && window.hostwatch.detailChart('cpu').scales.x.max,
        now: Date.now(),
      }));
      return r.pb === null && r.hidden && Math.abs(r.xmax - r.now) < 5000;
    });
  });

  await h.step('an admin removes the offline host: gone from the page and the API', async () => {
    await page.evaluate((g) => { location.hash = 'host=' + encodeURIComponent(g); }, GONE);
    await page.locator('#remove-host').waitFor({ state: 'visible' });
    await page.click('#remove-host');
    await page.fill('#remove-token', ADMIN);
    await page.click('#remove-confirm');
    await waitUntil('the overview without the host', 10000, () => ev((g) =>
      !location.hash.includes('host=') && !document.querySelector(`[data-host-id="${CSS.escape(g)}"]`), GONE));
    const listed = await ev((g) => fetch('api/hosts').then((r) => r.json()).then((l) => l.some((x) => x.id === g)), GONE);
    if (listed) throw new Error('the API still lists the removed host');
  });

  h.assertNoProblems('before the outage');
  h.ignoreProblems = true;
  process.stdout.write('READY_FOR_OUTAGE\n');
  await h.waitForLine('DOWN');
  await h.step('while the collector is down: a countdown, "reconnect now", statuses unknown', () =>
    waitUntil('the countdown', 15000, () => ev((a) => {
      const label = document.querySelector('#connection .connection-label').textContent;
      const button = document.getElementById('reconnect');
      const badge = document.querySelector(`#host-list [data-host-id="${CSS.escape(a)}"] .badge`);
      return /^Reconnecting in \d+ s$/.test(label) && !button.hidden && badge && badge.textContent === 'unknown';
    }, A)));
  process.stdout.write('DONE\n');
  await h.succeed();
}

main().catch((err) => h.fail(err && err.message ? err.message : String(err)));
