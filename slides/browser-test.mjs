// Renders each deck in Debian's chromium (headless, via playwright-core) and
// checks every slide: it renders, nothing overflows its box, no request
// leaves the machine, no console errors. Saves one screenshot per slide to
// ../build/slides/screenshots/ for review.
//
//   node browser-test.mjs talk.en.html talk.es.html
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.log(`SKIPPED: no chromium at ${executablePath} (install Debian's chromium)`);
  process.exit(0);
}
const decks = process.argv.slice(2);
const shots = resolve('../build/slides/screenshots');
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failures = 0;
const fail = (msg) => { failures++; console.log(`FAIL ${msg}`); };

for (const deck of decks) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  const errors = [];
  const outside = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  // Anything but local files and inline data is a request leaving the machine.
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  await page.goto(pathToFileURL(resolve(deck)).href);
  await page.waitForLoadState('load');
  const count = await page.locator('section').count();
  if (count === 0) fail(`${deck}: no slides`);
  for (let i = 1; i <= count; i++) {
    await page.evaluate((n) => { location.hash = `#${n}`; }, i);
    await page.waitForTimeout(150);  // bespoke's slide transition
    const report = await page.evaluate((n) => {
      const s = document.querySelectorAll('section')[n - 1];
      const box = s.getBoundingClientRect();
      const images = [...s.querySelectorAll('img')];
      return {
        empty: s.innerText.trim().length === 0 && images.length === 0,
        overflow: s.scrollHeight > s.clientHeight + 2 || s.scrollWidth > s.clientWidth + 2,
        broken: images.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.src),
        visible: box.width > 0 && box.height > 0,
      };
    }, i);
    const name = `${basename(deck, '.html')}-${String(i).padStart(2, '0')}.png`;
    await page.screenshot({ path: `${shots}/${name}` });
    if (report.empty) fail(`${deck} slide ${i}: renders empty`);
    if (report.overflow) fail(`${deck} slide ${i}: content overflows the slide`);
    if (report.broken.length) fail(`${deck} slide ${i}: image not loaded: ${report.broken.join(', ')}`);
  }
  for (const e of errors) fail(`${deck}: console error: ${e}`);
  for (const u of outside) fail(`${deck}: request left the machine: ${u}`);
  console.log(`${deck}: ${count} slides checked`);
  await page.close();
}
await browser.close();
console.log(failures ? `${failures} failed` : 'all slides passed');
process.exit(failures ? 1 : 0);
