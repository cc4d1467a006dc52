// Open a leaderboard site (harness leaderboard ... --out SITE) in headless Chromium, as a reader would:
// print the rows, sort by the mean BD-rate against the first anchor (up, then down), take a full-page
// screenshot, check that every picture loaded and follow every link.
//   npm install playwright-core   (in any folder outside the repository; Chromium: apt install chromium)
//   NODE_PATH=<that folder>/node_modules node benchmarks/leaderboard_in_chromium.js SITE [SHOT.png]
const path = require('path');
const { chromium } = require('playwright-core');
const site = path.resolve(process.argv[2] || 'site');
const shot = process.argv[3] || 'leaderboard.png';
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1300 } });
  await page.goto('file://' + path.resolve(site, 'index.html'));
  const names = async () => page.$$eval('table.sortable tbody tr td:first-child', tds => tds.map(t => t.textContent));
  console.log('rows as written:', (await names()).join(' | '));
  const th = page.locator('th[title^="BD-rate % on mean against"]').first();
  await th.click();
  console.log('sorted by', await th.getAttribute('title'), '(up):', (await names()).join(' | '));
  const col = await th.getAttribute('data-col');
  console.log('values:', (await page.$$eval(`table.sortable tbody tr td:nth-child(${Number(col) + 1})`, tds => tds.map(t => t.textContent))).join(' | '));
  await th.click();
  console.log('sorted (down):', (await names()).join(' | '));
  await th.click();
  await page.screenshot({ path: shot, fullPage: true });
  const imgs = await page.$$eval('img', xs => xs.map(i => [i.getAttribute('src'), i.naturalWidth]));
  console.log('images (src, naturalWidth):', JSON.stringify(imgs));
  if (imgs.some(([, width]) => !width)) process.exitCode = 1;
  const links = await page.$$eval('a', xs => xs.map(a => a.href));
  for (const href of links) {
    const p = await browser.newPage();
    const r = await p.goto(href);
    if (!(r && r.ok())) process.exitCode = 1;
    console.log('link', path.relative(site, new URL(href).pathname), r && r.ok() ? 'ok' : 'BROKEN', (await p.title()).slice(0, 60));
    await p.close();
  }
  await browser.close();
})();
