// Takes the README's screenshots of the page (run by `cargo run -p tests --example screenshots`):
// overview, table, host view, playback, in both themes, and at phone size.
//
// Environment: HOSTWATCH_URL (the page), HOSTWATCH_HOST (a host with history), HOSTWATCH_OUT
// (the directory for the PNGs), CHROMIUM.

import { join } from 'node:path';
import { createHarness, sleep, waitUntil } from './harness.mjs';

const h = createHarness('screenshots', 120_000);
const URL_ = process.env.HOSTWATCH_URL;
const HOST = process.env.HOSTWATCH_HOST;
const OUT = process.env.HOSTWATCH_OUT;

async function shoot(page, name) {
  await sleep(600);
  await page.screenshot({ path: join(OUT, name + '.png') });
  h.log(`${name}.png`);
}

async function main() {
  const page = await h.launch({ width: 1360, height: 860 });
  const theme = (t) => page.evaluate((x) => {
    localStorage.setItem('hostwatch.theme', x);
  }, t);
  const openHost = async (hash) => {
    await page.evaluate((x) => { location.hash = x; }, hash);
    await waitUntil('the host view charts', 10000, () => page.evaluate(() => {
      const u = window.hostwatch.detailChart('cpu');
      return u && u.data[0].length > 10;
    }));
  };
  for (const t of ['light', 'dark']) {
    await page.goto(URL_, { waitUntil: 'load' });
    await theme(t);
    await page.reload({ waitUntil: 'load' });
    await waitUntil('cards with charts', 15000, () => page.evaluate(() =>
      Object.values(window.hostwatch.charts).filter((u) => u.data[0].length > 5).length >= 3));
    await shoot(page, `overview-${t}`);
    await openHost('host=' + encodeURIComponent(HOST) + '&range=1h');
    await shoot(page, `host-${t}`);
  }
  await page.goto(URL_, { waitUntil: 'load' });
  await page.click('#view [data-view="table"]');
  await shoot(page, 'table-dark');
  await page.click('#view [data-view="cards"]');
  await openHost('host=' + encodeURIComponent(HOST) + '&range=1h');
  await page.click('#play');
  await page.click('#pb-speed [data-speed="60"]');
  await sleep(3000);
  await page.keyboard.press('Space');
  await shoot(page, 'playback-dark');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#pb-exit');
  await page.evaluate(() => { location.hash = ''; });
  await shoot(page, 'phone-overview-dark');
  await openHost('host=' + encodeURIComponent(HOST));
  await shoot(page, 'phone-host-dark');
  await h.succeed();
}

main().catch((err) => h.fail(err && err.message ? err.message : String(err)));
