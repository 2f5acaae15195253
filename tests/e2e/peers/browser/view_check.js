// Opens threadline's web view in Debian's Chromium (playwright-core) and reports what a person
// would see, for tests/e2e/test_web_view.py.
//
//   node view_check.js PLAN.json
//
// PLAN: {"base": "http://127.0.0.1:PORT/", "shots": "<dir>", "width": 1400, "height": 900,
//        "steps": [{"name": "list", "hash": "#/", "ready": "traces", "texts": {"rows": "#trace-list tr[data-trace]"},
//                   "wait_for": "tr[data-trace=\"...\"]", "screenshot": true, "full_page": true,
//                   "click": "<selector>", "click_position": {"x": 10, "y": 30},
//                   "after_click_wait": "<selector>", "after_click_texts": {...}}, ...]}
// Each step sets the page's location (the first loads it), waits for body[data-ready=<ready>]
// (and `wait_for` when given), then records: the wall time from navigation to ready, the
// page's own timing (window.tl.timing), window.tl, the innerText of each `texts` selector (all
// matches), then clicks `click` (at `click_position` in it, else its centre) and records `after_click_texts` once
// `after_click_wait` shows, creates the file `touch` when given, and takes a screenshot
// <shots>/<name>.png. A step with the same hash as the one before does not reload: the page
// stays as it is and only the waits apply (to see live updates). Prints one JSON object: {"steps": [...]}.
// Exit 2 when Chromium cannot be launched (the test decides whether that fails or skips).
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  let browser;
  try {
    browser = await chromium.launch({ executablePath: plan.chromium || '/usr/bin/chromium', headless: true, args: LAUNCH_ARGS });
  } catch (e) {
    process.stdout.write(JSON.stringify({ launch_error: String(e.message || e) }) + '\n');
    process.exit(2);
  }
  const results = [];
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: plan.width || 1400, height: plan.height || 900 } });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    let loaded = false;
    let lastHash = null;
    for (const step of plan.steps) {
      const t0 = Date.now();
      if (!loaded || step.reload) {
        await page.goto(plan.base + (step.hash || ''), { waitUntil: 'load' });
        loaded = true;
      } else if (step.hash !== lastHash) {
        await page.evaluate((h) => { location.hash = h; }, step.hash);
      }
      lastHash = step.hash;
      const r = { name: step.name };
      try {
        await page.waitForSelector(`body[data-ready="${step.ready}"]`, { timeout: step.timeout_ms || 15000 });
        if (step.wait_for) await page.waitForSelector(step.wait_for, { timeout: step.timeout_ms || 15000 });
        r.wall_ms = Date.now() - t0;
        r.tl = await page.evaluate(() => window.tl);
        r.texts = {};
        for (const [k, sel] of Object.entries(step.texts || {}))
          r.texts[k] = await page.$$eval(sel, (els) => els.map((e) => e.innerText));
        if (step.click) {
          await page.click(step.click, step.click_position ? { position: step.click_position } : {});
          if (step.after_click_wait) await page.waitForSelector(step.after_click_wait, { timeout: 10000 });
          r.after_click = {};
          for (const [k, sel] of Object.entries(step.after_click_texts || {}))
            r.after_click[k] = await page.$$eval(sel, (els) => els.map((e) => e.innerText));
        }
      } catch (e) {
        r.error = String(e.message || e);
        r.body = (await page.evaluate(() => document.body.innerText)).slice(0, 2000);
      }
      // Tells the test this step is done (it may act on the page's subject, then the next step
      // looks): the file `touch` is created.
      if (step.touch) fs.writeFileSync(step.touch, 'done\n');
      await page.mouse.move(0, 0);  // no tooltip over the picture
      if (step.screenshot !== false) {
        fs.mkdirSync(plan.shots, { recursive: true });
        r.screenshot = path.join(plan.shots, step.name + '.png');
        await page.screenshot({ path: r.screenshot, fullPage: !!step.full_page });
      }
      results.push(r);
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify({ steps: results, page_errors: errors }) + '\n');
}

main().catch((e) => { process.stdout.write(JSON.stringify({ fatal: String(e.stack || e) }) + '\n'); process.exit(1); });
