// Browser test of the admin dashboard (`/admin/`) against a running Poststelle node.
//
//   cd tests/dashboard && npm ci && \
//   ADMIN_URL=http://127.0.0.1:7403 ADMIN_TOKEN=… RETRY_ID=… SCREENSHOT=/tmp/dash.png node dashboard.mjs
//
// ADMIN_URL, ADMIN_TOKEN: required. RETRY_ID: a dead letter whose partner is up again, so that
// a retry delivers it (without it the retry step is skipped). SCREENSHOT: PNG path (optional);
// a second shot after the retry goes to the same path with `-after` before `.png`.
// VIEWER_TOKEN: an admin token with the role viewer (optional): the page, logged in with it,
// must name the role and hide retry, cancel and replay (the API refuses them all the same).
// CHROMIUM: the browser binary (default /usr/bin/chromium).
// Prints one JSON line on success (exit 0); on failure the reason goes to stderr (exit 1).

import { chromium } from 'playwright-core';

const OVERALL_MS = 120_000;
const TILES = ['delivered', 'in-flight', 'dead-letters', 'inbound-pending', 'rejected'];
const DLQ_PATH = '/admin/api/messages?status=failed&direction=outbound&limit=200';

function env(name, required) {
  const v = (process.env[name] || '').trim();
  if (required && !v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (returns a truthy value when done) every `every` ms for up to `ms` ms. */
async function until(what, ms, check, every = 500) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = null;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(every);
  }
}

function afterPath(p) {
  return /\.png$/i.test(p) ? p.replace(/\.png$/i, '-after.png') : `${p}-after.png`;
}

async function main(state) {
  const base = env('ADMIN_URL', true).replace(/\/+$/, '');
  const token = env('ADMIN_TOKEN', true);
  const retryId = env('RETRY_ID', false);
  const shot = env('SCREENSHOT', false);
  const summary = { url: `${base}/admin/`, checked: [] };

  async function apiGet(path) {
    const r = await fetch(base + path, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
    const text = await r.text();
    if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  state.browser = browser;
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.accept().catch(() => {}));

  // 1. log in through the form
  const resp = await page.goto(`${base}/admin/`, { waitUntil: 'domcontentloaded' });
  if (!resp || !resp.ok()) throw new Error(`GET /admin/: ${resp ? resp.status() : 'no response'}`);
  await page.locator('#token').waitFor({ state: 'visible', timeout: 10_000 });
  await page.fill('#token', token);
  await page.click('#login');
  // either the first refresh has been shown, or the form is back with a message (401)
  // Polled with page.evaluate, not page.waitForFunction: the latter's in-page polling evaluates
  // the predicate as a string, which the dashboard's CSP (no 'unsafe-eval') refuses whenever
  // the condition is not true at once.
  await until('the first refresh or the login message', 15_000, () => page.evaluate(
    () => (/^\d+$/.test(document.querySelector('[data-testid="tile-delivered"]')?.textContent || '')
      && Number(document.querySelector('#updated')?.dataset.count || 0) > 0)
      || (!document.querySelector('#login-view').hidden && document.querySelector('#login-msg').textContent),
  ), 100);
  if (await page.locator('#login-view').isVisible()) {
    throw new Error(`still on the login form after logging in: ${await page.textContent('#login-msg')}`);
  }
  summary.checked.push('login');

  // Reads what the page shows.
  const readPage = () => page.evaluate(() => {
    const q = (s) => [...document.querySelectorAll(s)];
    const tiles = {};
    for (const e of q('[data-testid^="tile-"]')) tiles[e.dataset.testid.slice(5)] = e.textContent;
    return {
      tiles,
      dlqIds: q('#dead-letters [data-testid="dlq-row"]').map((r) => r.dataset.id),
      queueDepths: q('#queues [data-testid="queue-row"] [data-testid="queue-depth"]').map((c) => c.textContent),
      processes: q('#processes [data-testid="process-row"]').map((r) => r.dataset.id + '=' + r.dataset.alive).sort().join(' '),
      banner: document.querySelector('[data-testid="error-banner"]')?.hidden ? '' : document.querySelector('[data-testid="error-banner"]')?.textContent,
    };
  });
  const refreshCount = () => page.evaluate(() => Number(document.querySelector('#updated').dataset.count));
  // The timeline panel may cover the header's Refresh button: click it without hit-testing.
  const nudge = () => page.locator('#refresh').dispatchEvent('click');
  /** Clicks #refresh and waits until that refresh has been shown. */
  async function refreshPage() {
    const before = await refreshCount();
    await nudge();
    await until('the next refresh', 15_000, () => page.evaluate(
      (n) => Number(document.querySelector('#updated').dataset.count) > n, before), 100);
  }
  function expected(status, queues, dlq) {
    const o = (status.counts && status.counts.outbound) || {};
    const n = (v) => (Number.isFinite(Number(v)) && v !== null ? Math.trunc(Number(v)) : 0);
    return {
      tiles: {
        delivered: String(n(o.delivered)),
        'in-flight': String(n(status.in_flight)),
        'dead-letters': String(n(status.dead_letters)),
        'inbound-pending': String(n(status.inbound_pending)),
        rejected: String(n(status.rejected)),
      },
      deadLetters: n(status.dead_letters),
      dlqIds: (dlq.messages || []).map((m) => m.id),
      depth: (queues.queues || []).reduce((a, x) => a + n(x.depth), 0),
      processes: (status.processes || []).map((p) => p.id + '=' + !!p.alive).sort().join(' '),
    };
  }
  function mismatches(shown, exp) {
    const out = [];
    for (const k of TILES) if (shown.tiles[k] !== exp.tiles[k]) out.push(`tile ${k}: page ${JSON.stringify(shown.tiles[k])}, API ${exp.tiles[k]}`);
    if (shown.dlqIds.length !== exp.deadLetters) out.push(`dlq rows: page ${shown.dlqIds.length}, API dead_letters ${exp.deadLetters}`);
    if (shown.dlqIds.length !== exp.dlqIds.length) out.push(`dlq rows: page ${shown.dlqIds.length}, API list ${exp.dlqIds.length}`);
    const depth = shown.queueDepths.reduce((a, x) => a + Number(x), 0);
    if (depth !== exp.depth) out.push(`queue depth sum: page ${depth}, API ${exp.depth}`);
    if (!exp.processes || shown.processes !== exp.processes) out.push(`processes: page ${shown.processes}, API ${exp.processes}`);
    if (retryId && !shown.dlqIds.includes(retryId)) {
      out.push(`no dlq-row with data-id ${retryId}${exp.dlqIds.includes(retryId) ? '' : ' (nor is it a dead letter in the API)'}`);
    }
    return out;
  }
  const fetchAll = async () => {
    const [status, queues, dlq] = await Promise.all([apiGet('/admin/api/status'), apiGet('/admin/api/queues'), apiGet(DLQ_PATH)]);
    return expected(status, queues, dlq);
  };

  // 2. the figures on the page are the API's (live data: compare against the API just before
  //    and just after a page refresh, and try again for up to 10 s)
  let problems = [];
  let matched;
  const compareEnd = Date.now() + 10_000;
  for (;;) {
    const before = await fetchAll();
    const shown = await readPage();
    const after = await fetchAll();
    const a = mismatches(shown, before);
    const b = mismatches(shown, after);
    if (!a.length || !b.length) { matched = { shown, exp: !a.length ? before : after }; break; }
    problems = b;
    if (Date.now() >= compareEnd) throw new Error(`the page does not show the API's figures: ${problems.join('; ')}`);
    await refreshPage();
  }
  summary.tiles = matched.exp.tiles;
  summary.dead_letters = matched.exp.deadLetters;
  summary.queue_depth = matched.exp.depth;
  summary.processes = matched.exp.processes;
  summary.checked.push('tiles', 'dlq-rows', 'queue-depth', 'processes');
  if (retryId) summary.checked.push('retry-row-present');
  if (matched.shown.banner) throw new Error(`error banner shown: ${matched.shown.banner}`);

  // 4a. screenshot with the dead letters
  // full-page shots draw the sticky header and the fixed timeline panel where the page is scrolled to
  const fullShot = async (path) => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path, fullPage: true });
  };
  if (shot) {
    await fullShot(shot);
    summary.screenshot = shot;
  }

  // 3. retry → the row leaves the dead letters → the timeline reaches delivered
  if (retryId) {
    const row = page.locator(`#dead-letters [data-testid="dlq-row"][data-id=${JSON.stringify(retryId)}]`);
    await row.locator('[data-testid="retry"]').click();
    const t0 = Date.now();
    let clicks = 0;
    await until(`dlq-row ${retryId} to disappear`, 60_000, async () => {
      if (await row.count() === 0) return true;
      if (++clicks % 5 === 0) await nudge();
      return false;
    });
    summary.checked.push('retry-row-gone');
    // open the timeline through the search form's message-id field
    await page.fill('#q-id', retryId);
    await page.click('#search');
    await page.locator('#timeline').waitFor({ state: 'visible', timeout: 10_000 });
    const status = page.locator('[data-testid="timeline-status"]');
    clicks = 0;
    await until(`timeline-status of ${retryId} to read delivered`, Math.max(5_000, 60_000 - (Date.now() - t0)), async () => {
      const id = (await page.locator('[data-testid="timeline-id"]').textContent()) || '';
      if (id.trim() === retryId && (await status.textContent())?.trim() === 'delivered') return true;
      if (++clicks % 5 === 0) await nudge();
      return false;
    });
    summary.checked.push('timeline-delivered');
    const m = await apiGet(`/admin/api/messages/${encodeURIComponent(retryId)}`);
    if (m.status !== 'delivered') throw new Error(`API says ${retryId} is ${m.status}, not delivered`);
    summary.checked.push('api-delivered');
    summary.retried = { id: retryId, seconds: Math.round((Date.now() - t0) / 100) / 10 };
    if (shot) {
      await fullShot(afterPath(shot));
      summary.screenshot_after = afterPath(shot);
    }
  }

  // 5. a viewer's page names its role and shows no action it may not take
  const viewer = env('VIEWER_TOKEN', false);
  if (viewer) {
    if (!(await page.locator('#replay-all').isVisible())) throw new Error('the admin token sees no Replay all');
    const vpage = await (await browser.newContext({ viewport: { width: 1440, height: 1000 } })).newPage();
    vpage.on('pageerror', (e) => pageErrors.push(e.message));
    await vpage.goto(`${base}/admin/`, { waitUntil: 'domcontentloaded' });
    await vpage.locator('#token').waitFor({ state: 'visible', timeout: 10_000 });
    await vpage.fill('#token', viewer);
    await vpage.click('#login');
    await until('the viewer\'s first refresh', 15_000, () => vpage.evaluate(
      () => Number(document.querySelector('#updated')?.dataset.count || 0) > 0), 100);
    const seen = await vpage.evaluate(() => ({
      who: document.querySelector('[data-testid="token-name"]').textContent,
      rows: document.querySelectorAll('#dead-letters [data-testid="dlq-row"]').length,
      retry: [...document.querySelectorAll('[data-testid="retry"], [data-testid="cancel"], #replay-all, #show-payload')]
        .filter((e) => e.offsetParent !== null).length,
    }));
    if (!/\(viewer\)$/.test(seen.who)) throw new Error(`the viewer's page says it is ${seen.who}`);
    if (seen.rows === 0) throw new Error('the viewer sees no dead letters to check the buttons on');
    if (seen.retry !== 0) throw new Error(`the viewer's page shows ${seen.retry} action buttons`);
    summary.checked.push('viewer-sees-no-actions');
  }

  if (pageErrors.length) throw new Error(`script errors on the page: ${pageErrors.join(' | ')}`);
  summary.ok = true;
  return summary;
}

const state = { browser: null };
let code = 1;
let timer;
try {
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`overall timeout (${OVERALL_MS / 1000} s)`)), OVERALL_MS);
  });
  const summary = await Promise.race([main(state), timeout]);
  process.stdout.write(JSON.stringify(summary) + '\n');
  code = 0;
} catch (e) {
  process.stderr.write(`dashboard test failed: ${e && e.message ? e.message : e}\n`);
} finally {
  clearTimeout(timer);
  if (state.browser) await state.browser.close().catch(() => {});
}
process.exit(code);
