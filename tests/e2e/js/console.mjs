// Drives the admin console in Debian's headless Chromium (puppeteer-core) against a running
// daemon that publishes into a real ClickHouse; tests/e2e/test_console_browser.py starts both
// and runs this script. It signs in through the 401 page's form, then on each tab checks what a
// person would look at and saves a screenshot:
//   Live          an event sent by the official Snowplow Node tracker appears with its
//                 enriched row; a malformed GET /i appears with its failure highlighted
//   Pipeline      ClickHouse up, the charts have lines drawn from the history
//   Dead letters  the malformed request is listed, inspected, replayed (fails again: the
//                 result says so) and purged through the confirmation dialog
//   Events        the tracker's row is in the table; sorting and a JSON column expand
//   Setup         the snippets name this collector; "Send a test event" is stored (200)
// That is the first phase (CONSOLE_PHASE=main). It also sends OVERSIZED requests over the
// daemon's `collector.max_payload_bytes`, which are acknowledged and dead-lettered as
// `size_violation`. The test then restarts the daemon with a larger limit (the config fix) and
// runs the second phase (CONSOLE_PHASE=replay):
//   Dead letters  the oversized requests page by page (25 a page), replayed by the filter: all
//                 of them load
//   Events        their rows are in the table
// Prints one JSON line: {"ok", "checks", "screenshots", "app_id", "test_event_id"} (or
// {"ok": false, "error"}, with a screenshot of the page as it was).
//
// Environment: CONSOLE_ADMIN_URL, CONSOLE_TOKEN, CONSOLE_COLLECTOR_PORT, CONSOLE_CHROMIUM,
// CONSOLE_SCREENSHOTS (a directory), CONSOLE_RUN_ID, CONSOLE_PHASE (main or replay),
// CONSOLE_OVERSIZED_BYTES (the size of each oversized request's page URL).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { newTracker, buildPageView } from '@snowplow/node-tracker';

const env = (name) => {
  const v = process.env[name];
  if (!v) { console.error(`${name} is not set`); process.exit(2); }
  return v;
};
const ADMIN = env('CONSOLE_ADMIN_URL');
const TOKEN = env('CONSOLE_TOKEN');
const COLLECTOR_PORT = Number(env('CONSOLE_COLLECTOR_PORT'));
const CHROMIUM = env('CONSOLE_CHROMIUM');
const SHOTS = env('CONSOLE_SCREENSHOTS');
const RUN = env('CONSOLE_RUN_ID');
const COLLECTOR = `http://127.0.0.1:${COLLECTOR_PORT}`;
const APP_ID = `console-e2e-${RUN}`;
const PHASE = env('CONSOLE_PHASE');
const OVERSIZED_BYTES = Number(env('CONSOLE_OVERSIZED_BYTES'));
// More than one page of the smallest page size the Dead letters tab offers (25).
const OVERSIZED = 30;
const BIG_APP_ID = `${APP_ID}-oversized`;
const STEP_TIMEOUT_MS = 20000;

const checks = [];
const screenshots = [];
const check = (what) => { checks.push(what); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function adminGet(path) {
  const resp = await fetch(`${ADMIN}${path}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  return { status: resp.status, body: resp.headers.get('content-type')?.includes('json') ? await resp.json() : await resp.text() };
}

let page = null;
let browser = null;
const pageErrors = [];

const shot = async (name) => {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  screenshots.push(path);
};
const text = (sel) => page.$eval(sel, (e) => e.textContent);

// Starts the browser and signs in through the 401 page's form. `expectedRefusals` are the
// answers of 400 or more the phase provokes on purpose; any other is a failure.
async function signIn(expectedRefusals) {
  mkdirSync(SHOTS, { recursive: true });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--window-size=1440,1000'],
    defaultViewport: { width: 1440, height: 1000 },
    protocolTimeout: 30000,
  });
  page = await browser.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Failed loads are checked by their answers below; anything else the console logs as an
  // error is a failure.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`);
  });
  const refusals = [['/console/', 401], ...expectedRefusals];
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const path = new URL(r.url()).pathname;
    const i = refusals.findIndex(([p, s]) => p === path && s === r.status());
    if (i >= 0) refusals.splice(i, 1);
    else pageErrors.push(`${r.request().method()} ${path} answered ${r.status()}`);
  });

  const first = await page.goto(`${ADMIN}/console/`);
  if (first.status() !== 401) throw new Error(`/console/ without a cookie answered ${first.status()}, not 401`);
  await page.waitForSelector('form input[name=token]');
  if (PHASE === 'main') await shot('0-sign-in');
  await page.type('input[name=token]', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (page.url() !== `${ADMIN}/console/`) throw new Error(`after signing in the URL is ${page.url()}`);
  const cookies = await browser.cookies();
  const session = cookies.find((c) => c.name === 'sluice_admin');
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') throw new Error(`the session cookie is ${JSON.stringify(session)}`);
  await page.waitForSelector('#ch-pill.up', { timeout: 30000 });
  check('signed in through the form: the URL has no token, the cookie is HttpOnly and SameSite=Strict, ClickHouse shows up');
}

// A Snowplow tp2 POST with one page view whose URL makes the body OVERSIZED_BYTES long or more.
function oversizedRequest(i) {
  const url = `https://shop.sluice.test/oversized/${i}?pad=${'x'.repeat(OVERSIZED_BYTES)}`;
  const event = {
    e: 'pv', tv: 'console-e2e', p: 'web', aid: BIG_APP_ID, eid: crypto.randomUUID(),
    dtm: String(Date.now()), url, page: `Oversized ${i}`,
  };
  return fetch(`${COLLECTOR}/com.snowplowanalytics.snowplow/tp2`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ schema: 'iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4', data: [event] }),
  });
}

async function mainPhase() {
  // The sign-in page (401) and the cookie POST without the console's header (403).
  await signIn([['/api/v1/dead-letters/purge', 403]]);

  // ---- Live: the tracker's event and a malformed request ----
  await page.waitForSelector('#live-dot.live');
  const tracker = newTracker({ namespace: 'console-e2e', appId: APP_ID },
    { endpoint: '127.0.0.1', protocol: 'http', port: COLLECTOR_PORT, eventMethod: 'post', bufferSize: 1 });
  const context = [{ schema: 'iglu:com.acme/console_run/jsonschema/1-0-0', data: { run: RUN } }];
  tracker.track(buildPageView({ pageUrl: `https://shop.sluice.test/console/${RUN}`, pageTitle: 'Console e2e' }), context);
  await tracker.flush();
  const malformed = await fetch(`${COLLECTOR}/i?aid=${APP_ID}-malformed`);
  if (!malformed.ok) throw new Error(`GET /i?aid=… answered ${malformed.status}`);
  await page.waitForFunction((app) => [...document.querySelectorAll('#live-list .record:not(.failed)')]
    .some((r) => r.textContent.includes(app) && r.textContent.includes('page_view') && r.textContent.includes('enriched row')),
  { timeout: 30000 }, APP_ID);
  check('Live: the Node tracker\'s page view appeared with its enriched row');
  await page.waitForFunction((app) => [...document.querySelectorAll('#live-list .record.failed')]
    .some((r) => r.textContent.includes(`${app}-malformed`) && r.textContent.includes('tracker_protocol_violation')),
  { timeout: 30000 }, APP_ID);
  check('Live: the malformed GET /i appeared as a failure with its category');
  for (let i = 0; i < OVERSIZED; i += 1) {
    const r = await oversizedRequest(i);
    if (!r.ok) throw new Error(`oversized request ${i} answered ${r.status}`);
  }
  // Their bodies are shown folded (the app_id is inside); the failure names the limit.
  await page.waitForFunction((n) => [...document.querySelectorAll('#live-list .record.failed')]
    .filter((r) => r.textContent.includes('size_violation') && r.textContent.includes('above collector.max_payload_bytes')).length === n,
  { timeout: 30000 }, OVERSIZED);
  check(`Live: ${OVERSIZED} requests over collector.max_payload_bytes were acknowledged and appeared as size_violation failures`);
  // Expand the tracker's record: every column and the request in full.
  await page.evaluate((app) => {
    const rec = [...document.querySelectorAll('#live-list .record:not(.failed)')].find((r) => r.textContent.includes(app));
    rec.querySelector('.rec-head').click();
  }, APP_ID);
  await page.waitForFunction(() => [...document.querySelectorAll('#live-list .record .rec-col h4')].some((h) => h.textContent === 'rows, every column'));
  await sleep(1600); // the new records' highlight fades
  await shot('1-live');
  // The page's own stream parser: an event split inside a CRLF, and the feed's lag comment.
  const parsed = await page.evaluate(() => {
    const out = [];
    const feed = sseParser((type, data) => out.push([type, data]), (c) => out.push(['comment', c]));
    feed(': sluice live feed\n\nevent: record\r');
    feed('\ndata: {"lsn":1}\r\n\r\n: lagged 5\n\nevent: record\ndata: {"lsn"');
    feed(':2}\n\n');
    return JSON.stringify(out);
  });
  const want = JSON.stringify([['comment', 'sluice live feed'], ['record', '{"lsn":1}'], ['comment', 'lagged 5'], ['record', '{"lsn":2}']]);
  if (parsed !== want) throw new Error(`the stream parser gave ${parsed}, not ${want}`);
  // Pause keeps arriving records aside, Resume shows them, Clear empties the page.
  await page.click('#live-pause');
  await page.waitForFunction(() => document.querySelector('#live-pause').textContent === 'Resume'
    && document.querySelector('#live-dot').classList.contains('paused'));
  const shown = await page.$$eval('#live-list .record', (r) => r.length);
  await fetch(`${COLLECTOR}/i?e=pv&tv=console-e2e&p=web&aid=${APP_ID}-paused`);
  await page.waitForFunction(() => /1 waiting/.test(document.querySelector('#live-counts').textContent));
  if (await page.$$eval('#live-list .record', (r) => r.length) !== shown) throw new Error('a record was shown while paused');
  await page.click('#live-pause');
  await page.waitForFunction((app) => document.querySelector('#live-list .record').textContent.includes(`${app}-paused`), {}, APP_ID);
  await page.click('#live-clear');
  await page.waitForFunction(() => document.querySelectorAll('#live-list .record').length === 0 && !document.querySelector('#live-empty').hidden);
  check('Live: the stream parser handles a split CRLF and `: lagged N`; Pause holds records back, Resume shows them, Clear empties');

  // A little steady traffic (ten pixels a second, their own app_id) so the charts have a shape.
  let loadSent = 0;
  const load = setInterval(() => {
    loadSent += 1;
    fetch(`${COLLECTOR}/i?e=pv&tv=console-e2e&p=web&aid=${APP_ID}-load&url=https%3A%2F%2Fshop.sluice.test%2F${loadSent}`).catch(() => {});
  }, 100);

  // ---- Pipeline: ClickHouse up, lines on the charts ----
  await page.goto(`${ADMIN}/console/#pipeline`);
  await page.waitForSelector('#pipe-cards .card.up');
  await page.waitForFunction(() => {
    const c = document.querySelector('#chart-rates');
    const { width, height } = c;
    if (!width || !height) return false;
    const px = c.getContext('2d').getImageData(0, 0, width, height).data;
    let blue = 0;
    for (let i = 0; i < px.length; i += 4) if (Math.abs(px[i] - 47) < 12 && Math.abs(px[i + 1] - 111) < 12 && Math.abs(px[i + 2] - 222) < 12) blue += 1;
    return blue > 50;
  }, { timeout: 30000 });
  // Six seconds of samples under load.
  await page.waitForFunction(() => pipeline.samples.length >= 8 && pipeline.samples.at(-1).rows_confirmed >= 40, { timeout: 30000 });
  await sleep(2100); // one more refresh of the page
  clearInterval(load);
  const partitions = await page.$$eval('#pipe-partitions tbody tr', (rows) => rows.length);
  if (partitions < 1) throw new Error('no partition rows on the Pipeline tab');
  check(`Pipeline: ClickHouse up, the rate chart has its line, ${partitions} partition row(s)`);
  await shot('2-pipeline');

  // ---- Dead letters: listed, inspected, replayed (fails again), purged ----
  await page.goto(`${ADMIN}/console/#dead-letters`);
  await page.waitForFunction(async () => {
    const rows = document.querySelectorAll('#dl-table tbody tr');
    if ([...rows].some((r) => r.textContent.includes('tracker_protocol_violation'))) return true;
    document.querySelector('#dl-filters button[type=submit]').click();
    await new Promise((r) => setTimeout(r, 500));
    return false;
  }, { timeout: 30000, polling: 700 });
  await page.evaluate(() => [...document.querySelectorAll('#dl-table tbody tr')]
    .find((r) => r.textContent.includes('tracker_protocol_violation')).click());
  await page.waitForFunction(() => /the request, decoded/.test(document.querySelector('#dl-detail')?.textContent || ''));
  const detail = await text('#dl-detail');
  if (!detail.includes(`${APP_ID}-malformed`)) throw new Error(`the dead letter's detail does not show the request: ${detail.slice(0, 300)}`);
  check('Dead letters: the malformed request is listed and its decoded request and messages shown');
  await shot('3-dead-letters');
  // Replay it: it fails again, and the result says so.
  await page.evaluate(() => {
    const box = [...document.querySelectorAll('#dl-table tbody tr')].find((r) => r.textContent.includes('tracker_protocol_violation')).querySelector('input');
    box.click();
  });
  await page.click('#dl-replay-selected');
  await page.waitForFunction(() => /Replayed .*1 tried, 0 loaded .*1 failed again/.test(document.querySelector('#dl-result').textContent));
  check('Dead letters: "Replay selected" went through the cookie and the console header; the result shows it failed again');
  await page.waitForFunction(() => [...document.querySelectorAll('#dl-table tbody tr')]
    .find((r) => r.textContent.includes('tracker_protocol_violation'))?.querySelector('.attempts')?.textContent === '2');
  // Purge it through the dialog.
  await page.evaluate(() => [...document.querySelectorAll('#dl-table tbody tr')].find((r) => r.textContent.includes('tracker_protocol_violation')).click());
  await page.waitForFunction(() => !!document.querySelector('#dl-detail .actions'));
  await page.evaluate(() => [...document.querySelectorAll('#dl-detail .actions button')].find((b) => b.textContent === 'Purge this').click());
  await page.waitForSelector('#confirm[open]');
  await shot('4-purge-dialog');
  await page.click('#confirm-ok');
  await page.waitForFunction(() => /Purged: 1 entry removed/.test(document.querySelector('#dl-result').textContent));
  const left = (await adminGet('/api/v1/dead-letters?category=tracker_protocol_violation')).body.entries;
  if (left.length !== 0) throw new Error(`${left.length} entries left after the purge`);
  check('Dead letters: purged through the confirmation dialog; the API lists none');

  // ---- Events: the tracker's row ----
  await page.goto(`${ADMIN}/console/#events`);
  await page.type('#ev-filters input[name=app_id]', APP_ID);
  await page.click('#ev-filters button[type=submit]');
  await page.waitForFunction(async (app) => {
    if ([...document.querySelectorAll('#ev-table tbody tr')].some((r) => r.textContent.includes(app))) return true;
    document.querySelector('#ev-refresh').click();
    await new Promise((r) => setTimeout(r, 500));
    return false;
  }, { timeout: 30000, polling: 700 }, APP_ID);
  check('Events: the tracker\'s row is in the table, filtered by its app_id');
  // Sort by event (click the header), then open the row and a JSON column.
  await page.evaluate(() => [...document.querySelectorAll('#ev-table thead th')].find((t) => t.textContent.startsWith('app_id')).click());
  await page.waitForFunction(() => /by app_id descending/.test(document.querySelector('#ev-page-info').textContent));
  await page.evaluate((app) => [...document.querySelectorAll('#ev-table tbody tr')].find((r) => r.textContent.includes(app)).click(), APP_ID);
  await page.waitForFunction(() => /columns have a value/.test(document.querySelector('#ev-detail')?.textContent || ''));
  const eventDetail = await text('#ev-detail');
  if (!eventDetail.includes('console_run')) throw new Error(`the row's detail does not show its context: ${eventDetail.slice(0, 300)}`);
  check('Events: sorted by a clicked column; the row\'s detail expands its contexts JSON');
  await shot('5-events');

  // ---- Setup: snippets and the test event ----
  await page.goto(`${ADMIN}/console/#setup`);
  await page.waitForFunction((c) => document.querySelector('#collector-url').value === c, {}, COLLECTOR);
  const snippets = await page.$$eval('#snippets .snippet', (s) => s.map((e) => e.textContent));
  if (snippets.length < 8 || !snippets.every((s) => s.includes(String(COLLECTOR_PORT)))) throw new Error('the snippets do not all name the collector');
  await page.click('#send-test');
  await page.waitForFunction(() => /^200: stored\./.test(document.querySelector('#test-result').textContent));
  const testEventId = await page.$eval('#test-result code', (e) => e.textContent);
  check('Setup: 8 snippets name this collector; "Send a test event" got 200 from the collector (CORS)');
  await shot('6-setup');

  // Writes with the cookie but without the console's header are refused, from this origin too.
  const refused = await page.evaluate(async () => {
    const r = await fetch('/api/v1/dead-letters/purge', { method: 'POST', body: '{"all":true}', headers: { 'Content-Type': 'application/json' } });
    return { status: r.status, body: await r.json() };
  });
  if (refused.status !== 403) throw new Error(`a cookie POST without X-Sluice-Console answered ${refused.status}`);
  check('a cookie POST without X-Sluice-Console is refused with 403');

  const oversized = (await adminGet('/api/v1/dead-letters?category=size_violation&limit=100')).body.entries;
  if (oversized.length !== OVERSIZED) throw new Error(`${oversized.length} size_violation dead letters, not ${OVERSIZED}`);
  check(`Dead letters: the ${OVERSIZED} oversized requests wait in the store for a config fix`);

  if (pageErrors.length) throw new Error(`the page reported errors: ${pageErrors.join(' | ')}`);
  await browser.close();
  return { testEventId };
}

// After the restart with a larger `collector.max_payload_bytes`: page through the oversized
// requests, replay them by the filter, and find their rows in Events.
async function replayPhase() {
  await signIn([]);
  await page.goto(`${ADMIN}/console/#dead-letters`);
  await page.waitForFunction(() => [...document.querySelectorAll('#dl-filters select[name=category] option')]
    .some((o) => o.value === 'size_violation'));
  await page.select('#dl-filters select[name=category]', 'size_violation');
  await page.select('#dl-filters select[name=limit]', '25');
  await page.click('#dl-filters button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#dl-page-info').textContent === 'page 1: 25 entries, more after'
    && [...document.querySelectorAll('#dl-table tbody tr')].every((r) => r.textContent.includes('size_violation')));
  const firstPage = await page.$$eval('#dl-table tbody tr', (rows) => rows.map((r) => r.dataset.id));
  await page.click('#dl-next');
  const rest = OVERSIZED - 25;
  await page.waitForFunction((n) => document.querySelector('#dl-page-info').textContent === `page 2: ${n} entries`, {}, rest);
  const secondPage = await page.$$eval('#dl-table tbody tr', (rows) => rows.map((r) => r.dataset.id));
  if (new Set([...firstPage, ...secondPage]).size !== OVERSIZED) throw new Error(`the two pages hold ${firstPage.length} + ${secondPage.length} entries with repeats`);
  if (!(await page.$eval('#dl-next', (b) => b.disabled))) throw new Error('"Next page" is enabled on the last page');
  check(`Dead letters: ${OVERSIZED} size_violation entries page by page (25, then ${rest}), none repeated`);
  await shot('7-dead-letters-page-2');
  await page.click('#dl-first');
  await page.waitForFunction(() => document.querySelector('#dl-page-info').textContent.startsWith('page 1: 25 entries'));

  await page.click('#dl-replay-filter');
  await page.waitForFunction((n) => new RegExp(`^Replayed every dead letter with category size_violation: ${n} tried, ${n} loaded \\(${n} rows\\), 0 failed again\\.$`)
    .test(document.querySelector('#dl-result').textContent), { timeout: 30000 }, OVERSIZED);
  await page.waitForFunction(() => !document.querySelector('#dl-empty').hidden);
  check(`Dead letters: "Replay all matching" after the config fix loaded all ${OVERSIZED}; none left`);
  await shot('8-replayed');

  await page.goto(`${ADMIN}/console/#events`);
  await page.type('#ev-filters input[name=app_id]', BIG_APP_ID);
  await page.click('#ev-filters button[type=submit]');
  await page.waitForFunction(async (app, n) => {
    const rows = [...document.querySelectorAll('#ev-table tbody tr')];
    if (rows.length === n && rows.every((r) => r.textContent.includes(app))) return true;
    document.querySelector('#ev-refresh').click();
    await new Promise((r) => setTimeout(r, 500));
    return false;
  }, { timeout: 30000, polling: 700 }, BIG_APP_ID, OVERSIZED);
  check(`Events: the ${OVERSIZED} replayed rows are in the table`);
  await shot('9-events-replayed');

  const left = (await adminGet('/api/v1/dead-letters?category=size_violation')).body.entries;
  if (left.length !== 0) throw new Error(`${left.length} size_violation entries left after the replay`);
  if (pageErrors.length) throw new Error(`the page reported errors: ${pageErrors.join(' | ')}`);
  await browser.close();
  return {};
}

const deadline = setTimeout(() => { console.error('console.mjs: over its time limit'); process.exit(3); }, 100000);
try {
  const r = PHASE === 'main' ? await mainPhase() : await replayPhase();
  clearTimeout(deadline);
  process.stdout.write(`${JSON.stringify({
    ok: true, checks, screenshots, app_id: APP_ID, oversized_app_id: BIG_APP_ID, test_event_id: r.testEventId,
  })}\n`);
  process.exit(0);
} catch (e) {
  if (page) {
    const path = join(SHOTS, 'failure.png');
    await page.screenshot({ path }).then(() => screenshots.push(path)).catch(() => {});
  }
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(e && e.stack || e), checks, screenshots })}\n`);
  process.exit(1);
}
