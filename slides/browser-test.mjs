// Renders each deck in Debian's chromium (headless, via playwright-core) at
// 1280x720 and fails when a slide is broken:
//
//   - the HTML (or PDF) is missing, or older than its Markdown or a picture
//   - the decks do not have the same number of slides, or a PDF has another
//   - a slide renders empty, or has no speaker notes
//   - a slide's title is not at the top
//   - a code block, table, image or paragraph reaches outside its slide, or
//     a code block scrolls inside itself
//   - text is smaller than it may be once Marp's scaling is applied (Marp
//     shrinks a code block that is too wide with an SVG viewBox; the size
//     that counts is the computed font size times every scale between the
//     text and the screen): code under 20 px, other text under 24 px
//   - a picture's labels are under 18 px at the size the slide shows it, or
//     two labels overlap, or a label leaves the picture
//   - prose has "--" for a dash or "us" for microseconds
//   - an image does not load, a request leaves the machine, the console
//     shows an error
//
// One screenshot per slide goes to ../build/slides/screenshots/, without
// bespoke's on-screen controls.
//
//   node browser-test.mjs talk.en.html talk.es.html
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const MIN = { code: 20, text: 24, label: 18 };
const WIDTH = 1280, HEIGHT = 720;

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  // On a laptop, one clear line; in CI a check that cannot look has failed.
  if (process.env.CI === 'true') {
    console.log(`FAILED: no chromium at ${executablePath}: CI must render the slides (install Debian's chromium)`);
    process.exit(1);
  }
  console.log(`SKIPPED: no chromium at ${executablePath} (install Debian's chromium)`);
  process.exit(0);
}
const decks = process.argv.slice(2);
const shots = resolve('../build/slides/screenshots');
mkdirSync(shots, { recursive: true });

let failures = 0;
const fail = (msg) => { failures++; console.log(`FAIL ${msg}`); };

// Missing or stale output: an HTML file older than what it is made of is the
// previous build, not this one.
const mtime = (p) => statSync(p).mtimeMs;
const sourcesOf = (deck) => {
  const md = deck.replace(/\.html$/, '.md');
  const dir = dirname(resolve(deck));
  const imgs = existsSync(join(dir, 'img'))
    ? readdirSync(join(dir, 'img')).filter((f) => f.endsWith('.svg')).map((f) => join(dir, 'img', f)) : [];
  return [md, ...imgs].filter(existsSync);
};
const fresh = (out, deck) => {
  if (!existsSync(out)) { fail(`${out}: missing (did marp fail?)`); return false; }
  for (const src of sourcesOf(deck)) {
    if (mtime(out) + 1 < mtime(src)) {
      fail(`${out}: older than ${basename(src)}: the stale output of an earlier build`);
      return false;
    }
  }
  return true;
};

function pdfPages(pdf) {
  try {
    const info = execFileSync('pdfinfo', [pdf], { encoding: 'utf8' });
    return Number(/^Pages:\s+(\d+)/m.exec(info)[1]);
  } catch (e) {
    if (e.code !== 'ENOENT') return -1;
    // No poppler-utils: count the page objects.
    return (readFileSync(pdf, 'latin1').match(/\/Type\s*\/Page(?![s\w])/g) || []).length;
  }
}

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

// Measured in the page, for one slide. Returns a list of problems. (Marp
// turns a code block's <pre> into <marp-pre> in the browser.)
function checkSlide({ n, MIN }) {
  const problems = [];
  const sections = [...document.querySelectorAll('svg[data-marpit-svg] > foreignObject > section')];
  const s = sections[n - 1];
  const box = s.getBoundingClientRect();
  const px = (v) => Math.round(v * 10) / 10;
  const describe = (el) => {
    const text = (el.textContent || el.getAttribute('alt') || '').trim().replace(/\s+/g, ' ');
    return `<${el.tagName.toLowerCase()}> "${text.slice(0, 40)}"`;
  };

  // Every scale between a node and the screen: SVG viewBoxes (the slide's
  // own, and the one Marp's auto-scaling puts around a wide code block) and
  // CSS transforms. Walks the composed tree (slots, shadow roots).
  const scaleOf = (node) => {
    let scale = 1;
    for (let el = node; el; ) {
      if (el instanceof SVGSVGElement && el.viewBox && el.viewBox.baseVal && el.viewBox.baseVal.width) {
        const r = el.getBoundingClientRect();
        if (r.width) scale *= r.width / el.viewBox.baseVal.width;
      } else if (el instanceof Element) {
        const t = getComputedStyle(el).transform;
        if (t && t !== 'none') {
          const m = new DOMMatrixReadOnly(t);
          scale *= Math.hypot(m.a, m.b);
        }
      }
      el = el.assignedSlot || el.parentNode || el.host;
      if (el instanceof ShadowRoot) el = el.host;
    }
    return scale;
  };

  if (s.innerText.trim().length === 0 && !s.querySelector('img')) problems.push('renders empty');

  // The title, at the top of the slide (not centred vertically).
  const h = s.querySelector('h1, h2');
  if (h && h.getBoundingClientRect().top - box.top > 90) {
    problems.push(`title ${describe(h)} starts ${px(h.getBoundingClientRect().top - box.top)} px down, not at the top`);
  }

  // Each element inside the slide's box.
  for (const el of s.querySelectorAll('pre, marp-pre, table, img, p, li, h1, h2, h3, blockquote, figure')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const out = [];
    if (r.right > box.right + 1) out.push(`right edge ${px(r.right - box.left)} > ${px(box.width)}`);
    if (r.bottom > box.bottom + 1) out.push(`bottom ${px(r.bottom - box.top)} > ${px(box.height)}`);
    if (r.left < box.left - 1) out.push(`left edge ${px(r.left - box.left)} < 0`);
    if (r.top < box.top - 1) out.push(`top ${px(r.top - box.top)} < 0`);
    if (out.length) problems.push(`${describe(el)} outside the slide: ${out.join(', ')}`);
    if ((['PRE', 'MARP-PRE', 'TABLE'].includes(el.tagName)) &&
        (el.scrollWidth > el.clientWidth + 2 || el.scrollHeight > el.clientHeight + 2)) {
      problems.push(`${describe(el)} is clipped inside itself (${el.scrollWidth}x${el.scrollHeight} in ${el.clientWidth}x${el.clientHeight})`);
    }
  }

  // Text sizes as they end up on the screen.
  const walker = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  const small = {};  // kind -> { count, smallest: [size, element] }
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.textContent.trim()) continue;
    const el = t.parentElement;
    if (!el || seen.has(el)) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const size = parseFloat(style.fontSize) * scaleOf(el);
    const code = !!el.closest('pre, marp-pre, code');
    const min = code ? MIN.code : MIN.text;
    if (size < min - 0.05) {
      const kind = code ? 'code' : 'text';
      const k = small[kind] || (small[kind] = { count: 0, size: Infinity, el: null, min });
      k.count++;
      if (size < k.size) { k.size = size; k.el = el; }
    }
  }
  for (const [kind, k] of Object.entries(small)) {
    problems.push(`${kind} too small: ${k.count} element(s) under ${k.min} px, the smallest ${describe(k.el)} at ${px(k.size)} px`);
  }

  // Typography of the prose (code keeps its own spelling).
  const prose = [];
  const pw = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
  for (let t = pw.nextNode(); t; t = pw.nextNode()) {
    if (!t.parentElement.closest('pre, marp-pre, code')) prose.push(t.textContent);
  }
  const text = prose.join(' ');
  if (/(^|\s)--(\s|$)/.test(text)) problems.push('"--" in the prose: use an en or em dash');
  if (/\d\s?us\b/.test(text)) problems.push('"us" for microseconds: write µs');

  // Images: loaded, and the SVG ones measured.
  const images = [...s.querySelectorAll('img')].map((img) => {
    const r = img.getBoundingClientRect();
    return { src: img.src, ok: img.complete && img.naturalWidth > 0, width: r.width * scaleOf(img.parentElement) };
  });
  return { problems, images };
}

// Labels of one SVG: sizes (in its own units) and boxes, measured by
// putting it in the page at 1:1.
async function measureSvg(page, src) {
  return page.evaluate(async (src) => {
    const text = await (await fetch(src)).text();
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = document.importNode(doc.documentElement, true);
    const vb = svg.viewBox.baseVal;
    const holder = document.createElement('div');
    holder.style.cssText = 'position:fixed;left:0;top:0;visibility:hidden;';
    svg.setAttribute('width', vb.width);
    svg.setAttribute('height', vb.height);
    holder.appendChild(svg);
    document.body.appendChild(holder);
    const labels = [...svg.querySelectorAll('text')].filter((t) => t.textContent.trim()).map((t) => {
      const b = t.getBBox();
      return { text: t.textContent.trim().replace(/\s+/g, ' '), size: parseFloat(getComputedStyle(t).fontSize),
               x: b.x, y: b.y, w: b.width, h: b.height };
    });
    holder.remove();
    return { width: vb.width, height: vb.height, title: (svg.querySelector('title') || {}).textContent || '', labels };
  }, src);
}

function svgProblems(svg, shownWidth) {
  const problems = [];
  const scale = shownWidth / svg.width;
  for (const l of svg.labels) {
    const size = l.size * scale;
    if (size < MIN.label - 0.05) problems.push(`label "${l.text}" at ${size.toFixed(1)} px (minimum ${MIN.label})`);
    if (l.x < -1 || l.y < -1 || l.x + l.w > svg.width + 1 || l.y + l.h > svg.height + 1) {
      problems.push(`label "${l.text}" leaves the picture`);
    }
  }
  // Pairwise: glyph boxes of two labels may not overlap (1 unit of slack).
  for (let i = 0; i < svg.labels.length; i++) {
    for (let j = i + 1; j < svg.labels.length; j++) {
      const a = svg.labels[i], b = svg.labels[j];
      const dx = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
      const dy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
      if (dx > 1 && dy > 1) problems.push(`labels "${a.text}" and "${b.text}" overlap`);
    }
  }
  return problems;
}

const counts = {};
for (const deck of decks) {
  if (!fresh(deck, deck)) continue;
  const page = await browser.newPage({ viewport: { width: WIDTH, height: HEIGHT } });
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
  // bespoke's on-screen controls stay out of the screenshots.
  await page.addStyleTag({ content: '.bespoke-marp-osc { display: none !important; }' });
  const count = await page.locator('svg[data-marpit-svg] > foreignObject > section').count();
  counts[deck] = count;
  if (count === 0) fail(`${deck}: no slides`);
  // Speaker notes: bespoke keeps them in .bespoke-marp-note[data-index].
  const notes = await page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('.bespoke-marp-note')].map((n) => [n.dataset.index,
      // excerpt and include markers are comments too; they are not notes
      n.textContent.split('\n').filter((l) => !/^\s*(excerpt|include|end include)\b/.test(l)).join('\n').trim()])));
  const svgCache = new Map();
  for (let i = 1; i <= count; i++) {
    await page.evaluate((n) => { location.hash = `#${n}`; }, i);
    await page.waitForTimeout(150);  // bespoke's slide transition
    const report = await page.evaluate(checkSlide, { n: i, MIN });
    const where = `${deck} slide ${i}`;
    for (const p of report.problems) fail(`${where}: ${p}`);
    if (!notes[String(i - 1)]) fail(`${where}: no speaker notes`);
    for (const img of report.images) {
      if (!img.ok) { fail(`${where}: image not loaded: ${img.src.slice(0, 60)}`); continue; }
      if (!img.src.startsWith('data:image/svg+xml') && !img.src.endsWith('.svg')) continue;
      if (!svgCache.has(img.src)) svgCache.set(img.src, await measureSvg(page, img.src));
      const svg = svgCache.get(img.src);
      for (const p of svgProblems(svg, img.width)) fail(`${where}: picture "${svg.title}": ${p}`);
    }
    const name = `${basename(deck, '.html')}-${String(i).padStart(2, '0')}.png`;
    await page.screenshot({ path: `${shots}/${name}` });
  }
  for (const e of errors) fail(`${deck}: console error: ${e}`);
  for (const u of outside) fail(`${deck}: request left the machine: ${u}`);
  console.log(`${deck}: ${count} slides checked`);
  await page.close();

  // The PDF of the same deck: as fresh, and as many pages as slides.
  const pdf = deck.replace(/\.html$/, '.pdf');
  if (process.env.SLIDES_NO_PDF !== '1' && fresh(pdf, deck)) {
    const pages = pdfPages(pdf);
    if (pages !== count) fail(`${pdf}: ${pages} pages for ${count} slides`);
    else console.log(`${pdf}: ${pages} pages`);
  }
}
const lengths = Object.entries(counts);
if (lengths.length > 1 && lengths.some(([, c]) => c !== lengths[0][1])) {
  fail(`the decks differ in length: ${lengths.map(([d, c]) => `${d} ${c}`).join(', ')}`);
}
await browser.close();
console.log(failures ? `${failures} failed` : 'all slides passed');
process.exit(failures ? 1 : 0);
