// The sluice console: five tabs over the admin API, in plain JavaScript (no build step, no
// library). Everything shown that came from a request (events, headers, dead letters) is put
// into the page as text (textContent), never as HTML.
//
// Authentication: the page was loaded with the `sluice_admin` cookie (HttpOnly: this script
// never sees the token), which the browser sends with every fetch to this origin. Requests that
// change something also send `X-Sluice-Console: 1`: the daemon refuses cookie-authenticated
// writes without it, because a form or a script on another page of this host cannot send it
// (see the README's "Console").
'use strict';

const MAX_LIVE_RECORDS = 500;
const PIPELINE_REFRESH_MS = 2000;
const STATUS_REFRESH_MS = 5000;
const SOURCES = ['snowplow', 'segment', 'pycolytics', 'collect'];
const CHART_COLORS = ['#2f6fde', '#17a673', '#e8590c', '#c2362f'];

// ------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

/** An element with attributes (`class`, `data-*`, properties such as `checked`) and children
 * (nodes, or strings added as text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtTime(ms, withMs = true) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(Number(ms));
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
}
function fmtDateTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(ms, false)}`;
}
function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}
function fmtRate(n) {
  if (!n) return '0';
  return n >= 100 ? fmtNum(n) : n >= 10 ? fmtNum(n, 1) : fmtNum(n, 2);
}
function fmtBytes(b) {
  if (b === null || b === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(b);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v >= 100 || i === 0 ? fmtNum(v) : fmtNum(v, 1)} ${units[i]}`;
}
function fmtDuration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/** A refusal of the admin API: its status, its `{"error", "code"}`. */
class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the admin API; JSON in and out. Writes carry the console's header. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-Sluice-Console'] = '1';
    headers['Content-Type'] = 'application/json';
  }
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin', cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `the daemon does not answer (${e.message}); is it running?`, 'unreachable');
  }
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    if (resp.status === 401) signedOut(data && data.error);
    throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`, data && data.code);
  }
  return data;
}

function signedOut(why) {
  const b = $('#banner');
  b.replaceChildren(
    'This browser is no longer signed in to the console',
    why ? ` (${why})` : '', '. ',
    el('a', { href: '/console/' }, 'Sign in again'), '.',
  );
  b.hidden = false;
}

function showBanner(text) {
  const b = $('#banner');
  if (!text) { b.hidden = true; return; }
  b.textContent = text;
  b.hidden = false;
}

function parseJsonText(v) {
  if (typeof v !== 'string') return undefined;
  const t = v.trim();
  if (!(t.startsWith('{') && t.endsWith('}')) && !(t.startsWith('[') && t.endsWith(']'))) return undefined;
  try { return JSON.parse(t); } catch { return undefined; }
}

/** base64 or base64url (padding optional) to text, or undefined. */
function decodeBase64(s) {
  try {
    const b = s.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b + '='.repeat((4 - (b.length % 4)) % 4));
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch { return undefined; }
}

// ------------------------------------------------------------------------------------------
// JSON trees: native <details>, so expanding needs no script; children are built when opened
// ------------------------------------------------------------------------------------------

/** A JSON scalar; a string holding JSON becomes a tree marked "json". `plain` shows strings
 * without quotes (in key/value grids). */
function jsonScalar(v, { plain = false, openDepth = 0 } = {}) {
  if (v === null || v === undefined) return el('span', { class: 'j-lit' }, 'null');
  if (typeof v === 'number') return el('span', { class: 'j-num' }, String(v));
  if (typeof v === 'boolean') return el('span', { class: 'j-lit' }, String(v));
  const parsed = parseJsonText(v);
  if (parsed !== undefined) return jsonTree(parsed, openDepth, 'json');
  return plain ? el('span', {}, v) : el('span', { class: 'j-str' }, JSON.stringify(v));
}

/** An expandable view of `value`; levels above `openDepth` start open. `tag` marks the
 * summary (e.g. "json" for JSON that was held as text). */
function jsonTree(value, openDepth = 1, tag = null) {
  if (value === null || typeof value !== 'object') return jsonScalar(value);
  const isArray = Array.isArray(value);
  const keys = isArray ? value.map((_, i) => i) : Object.keys(value);
  if (keys.length === 0) return el('span', { class: 'j-lit' }, isArray ? '[]' : '{}');
  const preview = isArray
    ? `[ ${keys.length} item${keys.length === 1 ? '' : 's'} ]`
    : `{ ${keys.slice(0, 4).join(', ')}${keys.length > 4 ? ', …' : ''} }`;
  const d = el('details', { class: 'j' }, el('summary', {}, preview,
    tag ? el('span', { class: 'j-tag', title: 'JSON held as text' }, tag) : null));
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    const body = el('div', { class: 'j-body' });
    for (const k of keys) {
      body.append(el('div', {}, el('span', { class: 'j-key' }, isArray ? String(k) : JSON.stringify(k)), ': ',
        jsonTree(value[k], openDepth - 1)));
    }
    d.append(body);
  };
  d.addEventListener('toggle', build);
  if (openDepth > 0) { d.open = true; build(); }
  return d;
}

/** A key/value grid; values that hold JSON become trees. */
function kvGrid(pairs) {
  const g = el('div', { class: 'kv' });
  for (const [k, v] of pairs) {
    g.append(el('div', { class: 'k' }, k));
    g.append(el('div', { class: 'v' }, v instanceof Node ? v
      : (typeof v === 'object' && v !== null ? jsonTree(v, 0) : jsonScalar(v, { plain: true }))));
  }
  return g;
}

// ------------------------------------------------------------------------------------------
// A stored request (the envelope, as `sluice dlq show` prints it)
// ------------------------------------------------------------------------------------------

/** Snowplow parameters that hold base64 JSON. */
const BASE64_PARAMS = new Set(['cx', 'ue_px']);

function requestView(env, { full = true } = {}) {
  if (!env) return el('p', { class: 'muted' }, 'no request');
  const box = el('div', {});
  const url = env.path + (env.query ? `?${env.query}` : '');
  box.append(el('div', { class: 'mono' }, el('b', {}, env.method || '?'), ' ', url.length > 160 && !full ? `${url.slice(0, 160)}…` : url));
  const meta = [];
  if (env.route && env.route !== env.path) meta.push(['route', env.route]);
  if (env.received_at_ms) meta.push(['received', fmtDateTime(env.received_at_ms)]);
  if (env.peer) meta.push(['peer', env.peer]);
  if (env.nuid) meta.push(['nuid', env.nuid]);
  if (env.query) {
    for (const [k, v] of new URLSearchParams(env.query)) {
      let shown = v;
      if (BASE64_PARAMS.has(k)) {
        const decoded = decodeBase64(v);
        const parsed = parseJsonText(decoded);
        if (parsed !== undefined) shown = jsonTree(parsed, 0);
      }
      meta.push([`?${k}`, shown]);
    }
  }
  if (meta.length) box.append(kvGrid(meta));
  if (env.body !== undefined && env.body !== null && env.body !== '') {
    const parsed = parseJsonText(env.body);
    box.append(el('h4', { class: 'more' }, 'body'));
    box.append(parsed !== undefined ? jsonTree(parsed, full ? 2 : 1) : el('pre', { class: 'body' }, env.body));
  } else if (env.body_base64) {
    box.append(el('h4', { class: 'more' }, 'body (binary, base64)'), el('pre', { class: 'body' }, env.body_base64));
  }
  if (full && Array.isArray(env.headers) && env.headers.length) {
    const d = el('details', { class: 'j more' }, el('summary', {}, `headers (${env.headers.length})`));
    d.append(el('div', { class: 'j-body' }, kvGrid(env.headers.map(([k, v]) => [k, v]))));
    box.append(d);
  }
  return box;
}

// ------------------------------------------------------------------------------------------
// Tabs
// ------------------------------------------------------------------------------------------

const tabs = {};
let currentTab = null;

function showTab(name) {
  if (!tabs[name]) name = 'live';
  if (currentTab === name) return;
  if (currentTab && tabs[currentTab].hide) tabs[currentTab].hide();
  currentTab = name;
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('on', a.dataset.tab === name);
  for (const s of document.querySelectorAll('main > .tab')) s.hidden = s.id !== `tab-${name}`;
  tabs[name].show();
}

// ------------------------------------------------------------------------------------------
// The daemon's status: the top bar, shared by the tabs
// ------------------------------------------------------------------------------------------

let lastStatus = null;
const statusListeners = [];

async function refreshStatus() {
  try {
    const s = await api('/api/v1/status');
    lastStatus = s;
    const pill = $('#ch-pill');
    pill.className = `pill ${s.clickhouse.up ? 'up' : 'down'}`;
    pill.textContent = s.clickhouse.up ? 'ClickHouse up' : s.clickhouse.connected ? 'ClickHouse failing' : 'ClickHouse down';
    pill.title = s.clickhouse.last_error || (s.clickhouse.version ? `ClickHouse ${s.clickhouse.version}` : '');
    $('#daemon-info').textContent = `sluice ${s.version} · up ${fmtDuration(s.uptime_seconds)}`;
    const dl = $('#dl-count');
    dl.hidden = !s.dead_letters.total;
    dl.textContent = fmtNum(s.dead_letters.total);
    if (!$('#banner').querySelector('a')) showBanner(null);
    for (const f of statusListeners) f(s);
  } catch (e) {
    if (e.status !== 401) showBanner(`The admin API did not answer: ${e.message}`);
  }
  return lastStatus;
}

// ------------------------------------------------------------------------------------------
// Live: /api/v1/live read as a stream (fetch, not EventSource: an EventSource hides comment
// lines, so `: lagged N` would be invisible, and it hides why a connection was refused)
// ------------------------------------------------------------------------------------------

/** A Server-Sent Events parser: feed it text, it calls `onEvent(type, data)` per event and
 * `onComment(text)` per comment line. */
function sseParser(onEvent, onComment) {
  let buffer = '';
  let data = [];
  let type = '';
  return (chunk) => {
    buffer += chunk;
    // A trailing CR may be the first half of a CRLF: keep it for the next chunk.
    const holdCr = buffer.endsWith('\r');
    const text = holdCr ? buffer.slice(0, -1) : buffer;
    const lines = text.split(/\r\n|\r|\n/);
    buffer = lines.pop() + (holdCr ? '\r' : '');
    for (const line of lines) {
      if (line === '') {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        data = [];
        type = '';
      } else if (line[0] === ':') {
        onComment(line.slice(1).trim());
      } else {
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? '' : line.slice(i + 1);
        if (value[0] === ' ') value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') type = value;
      }
    }
  };
}

const live = {
  controller: null,
  paused: false,
  pending: [],
  received: 0,
  skipped: 0,
  droppedWhilePaused: 0,
  started: false,

  show() {
    if (!this.started) { this.started = true; this.connect(); }
  },

  query() {
    const form = $('#live-filters');
    const q = new URLSearchParams();
    for (const name of ['source', 'route', 'app_id', 'event']) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    return q.toString();
  },

  setState(kind, text) {
    $('#live-dot').className = `dot ${kind}`;
    $('#live-status').textContent = text;
  },

  updateCounts() {
    const parts = [`${fmtNum(this.received)} received`];
    if (this.skipped) parts.push(`${fmtNum(this.skipped)} skipped (this page fell behind)`);
    if (this.paused) parts.push(`${fmtNum(this.pending.length)} waiting`);
    if (this.droppedWhilePaused) parts.push(`${fmtNum(this.droppedWhilePaused)} not kept while paused`);
    $('#live-counts').textContent = `· ${parts.join(' · ')}`;
  },

  connect() {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.run(this.query(), controller.signal);
  },

  async run(query, signal) {
    let delay = 1000;
    const notice = $('#live-notice');
    while (!signal.aborted) {
      this.setState('', 'connecting…');
      try {
        const resp = await fetch(`/api/v1/live${query ? `?${query}` : ''}`, {
          headers: { Accept: 'text/event-stream' }, credentials: 'same-origin', cache: 'no-store', signal,
        });
        if (resp.status === 404) {
          notice.textContent = 'This daemon has no live feed: /api/v1/live answered 404 (a sluice built before the feed existed). '
            + 'The other tabs work; the Events tab shows what reached ClickHouse.';
          notice.hidden = false;
          this.setState('down', 'no live feed on this daemon');
          return;
        }
        if (resp.status === 401) { signedOut(); this.setState('down', 'signed out'); return; }
        if (!resp.ok) {
          let message = `${resp.status} ${resp.statusText}`;
          try { message = (await resp.json()).error || message; } catch { /* not JSON */ }
          if (resp.status === 400) {
            notice.textContent = `The filter was refused: ${message}`;
            notice.hidden = false;
            this.setState('down', 'filter refused');
            return;
          }
          throw new Error(message);
        }
        notice.hidden = true;
        this.setState(this.paused ? 'paused' : 'live', this.paused ? 'paused' : 'live');
        delay = 1000;
        const parse = sseParser((type, data) => {
          if (type !== 'record') return;
          try { this.receive(JSON.parse(data)); } catch (e) { console.warn('unreadable live record', e); }
        }, (comment) => {
          const m = /^lagged\s+(\d+)/.exec(comment);
          if (m) { this.skipped += Number(m[1]); this.updateCounts(); }
        });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parse(value);
        }
        if (!signal.aborted) this.setState('', 'the feed ended; reconnecting…');
      } catch (e) {
        if (signal.aborted) return;
        this.setState('down', `disconnected (${e.message}); retrying in ${Math.round(delay / 1000)}s`);
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15000);
    }
  },

  receive(record) {
    this.received += 1;
    if (this.paused) {
      this.pending.push(record);
      if (this.pending.length > MAX_LIVE_RECORDS) { this.pending.shift(); this.droppedWhilePaused += 1; }
    } else {
      this.render(record);
    }
    this.updateCounts();
  },

  render(record, fresh = true) {
    const list = $('#live-list');
    list.prepend(liveRecord(record, fresh));
    while (list.children.length > MAX_LIVE_RECORDS) list.lastElementChild.remove();
    $('#live-empty').hidden = true;
  },

  togglePause() {
    this.paused = !this.paused;
    $('#live-pause').textContent = this.paused ? 'Resume' : 'Pause';
    if (!this.paused) {
      for (const r of this.pending) this.render(r, false);
      this.pending = [];
      this.droppedWhilePaused = 0;
    }
    const connected = $('#live-dot').classList.contains('live') || $('#live-dot').classList.contains('paused');
    if (connected) this.setState(this.paused ? 'paused' : 'live', this.paused ? 'paused' : 'live');
    this.updateCounts();
  },

  clear() {
    $('#live-list').replaceChildren();
    this.pending = [];
    this.received = 0;
    this.skipped = 0;
    this.droppedWhilePaused = 0;
    $('#live-empty').hidden = false;
    this.updateCounts();
  },
};
tabs.live = live;

/** The columns shown for a row without expanding it. */
const ROW_SUMMARY = ['event', 'app_id', 'platform', 'event_id', 'user_id', 'anonymous_id', 'domain_userid',
  'network_userid', 'page_url', 'se_category', 'se_action', 'se_label', 'event_name', 'stream', 'collector_tstamp'];

function present(v) { return v !== null && v !== undefined && v !== ''; }

/** A timestamp column's value as a person reads it (the live feed sends ms since the epoch). */
function shownValue(key, v) {
  return key.endsWith('_tstamp') && typeof v === 'number' && v > 1e11 ? `${fmtDateTime(v)}.${pad(v % 1000, 3)}` : v;
}

function rowSummary(row) {
  const pairs = ROW_SUMMARY.filter((k) => present(row[k])).map((k) => [k, shownValue(k, row[k])]);
  return kvGrid(pairs.length ? pairs : Object.entries(row).filter(([, v]) => present(v)).slice(0, 8));
}

function failureView(f) {
  const messages = Array.isArray(f.messages) ? f.messages : [String(f.messages ?? '')];
  return el('div', { class: 'failure' },
    el('b', {}, f.category || 'failure'),
    f.event_index !== null && f.event_index !== undefined ? ` · event #${f.event_index}` : ' · the whole request',
    el('ul', {}, messages.map((m) => el('li', {}, m))));
}

function liveRecord(r, fresh) {
  const events = Array.isArray(r.events) ? r.events : [];
  const failures = Array.isArray(r.failures) ? r.failures : [];
  const names = {};
  for (const e of events) names[e.event || '?'] = (names[e.event || '?'] || 0) + 1;
  const source = r.source || events.find((e) => e.source)?.source;
  const apps = [...new Set(events.map((e) => e.app_id).filter(present))];
  const aid = r.request?.query ? new URLSearchParams(r.request.query).get('aid') : null;
  if (!apps.length && aid) apps.push(aid);
  const li = el('li', { class: `record${failures.length ? ' failed' : ''}${fresh ? ' fresh' : ''}` });
  const head = el('div', { class: 'rec-head', title: 'click to expand' },
    el('time', {}, fmtTime(r.received_at_ms)),
    el('span', { class: 'method' }, r.method || r.request?.method || ''),
    el('code', {}, r.route || r.request?.route || ''),
    source ? el('span', { class: 'badge src' }, source) : null,
    apps.length ? el('span', {}, 'app ', el('b', {}, apps.join(', '))) : null,
    Object.entries(names).map(([n, c]) => el('span', { class: 'badge' }, c > 1 ? `${n} ×${c}` : n)),
    events.length ? el('span', { class: 'badge ok' }, `${events.length} row${events.length === 1 ? '' : 's'}`) : null,
    failures.map((f) => el('span', { class: 'badge bad' }, f.category)),
    el('span', { class: 'where' }, `p${r.partition} · lsn ${r.lsn}`));
  const cols = el('div', { class: 'rec-cols' });
  const left = el('div', { class: 'rec-col' }, el('h4', {}, 'request'), requestView(r.request, { full: false }));
  const right = el('div', { class: 'rec-col' }, el('h4', {}, events.length ? `enriched row${events.length === 1 ? '' : 's'}` : 'rows'));
  if (!events.length && !failures.length) right.append(el('p', { class: 'muted' }, 'no rows (an empty batch)'));
  events.slice(0, 3).forEach((e) => right.append(el('div', { class: 'row-block' }, rowSummary(e))));
  if (events.length > 3) right.append(el('p', { class: 'muted' }, `… and ${events.length - 3} more (expand)`));
  failures.forEach((f) => right.append(failureView(f)));
  cols.append(left, right);
  const full = el('div', { class: 'rec-cols', hidden: true });
  let built = false;
  head.addEventListener('click', () => {
    if (!built) {
      built = true;
      full.append(
        el('div', { class: 'rec-col' }, el('h4', {}, 'request, in full'), requestView(r.request, { full: true })),
        el('div', { class: 'rec-col' }, el('h4', {}, 'rows, every column'),
          events.length ? events.map((e) => el('div', { class: 'row-block' },
            jsonTree(Object.fromEntries(Object.entries(e).filter(([, v]) => present(v))), 1))) : el('p', { class: 'muted' }, 'none')));
    }
    full.hidden = !full.hidden;
    cols.hidden = !full.hidden;
  });
  li.append(head, cols, full);
  return li;
}

// ------------------------------------------------------------------------------------------
// Pipeline: cards, charts drawn on canvas, partitions, dead letters by category
// ------------------------------------------------------------------------------------------

/** A round step for about `target` ticks over `span`. */
function niceStep(span, target = 4) {
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

/**
 * Draws a time-series chart: `series` = [{name, points: [[time_ms, value]]}], over
 * [from, to]; `band` = [[time_ms, up]] drawn as a strip under the plot (ClickHouse up/down).
 */
function drawChart(canvas, { series, from, to, format = fmtRate, band, cursor, integer = false }) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 200;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 56;
  const right = 10;
  const top = 8;
  const bandH = band ? 8 : 0;
  const bottom = 22 + (band ? bandH + 4 : 0);
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v > max) max = v;
  const step = integer ? Math.max(1, niceStep(max > 0 ? max : 1)) : niceStep(max > 0 ? max : 1);
  const yMax = Math.max(step, Math.ceil((max || 1) / step) * step);
  const x = (t) => left + ((t - from) / (to - from)) * plotW;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  // the grid and the y axis
  ctx.strokeStyle = '#e7eaf0';
  ctx.fillStyle = '#7b8496';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  for (let v = 0; v <= yMax + step / 1000; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + plotW, yy); ctx.stroke();
    ctx.fillText(format(v), left - 6, yy);
  }
  // the time axis: a round number of seconds per tick
  const spanS = (to - from) / 1000;
  const tickS = [10, 15, 30, 60, 120, 300, 600, 1800, 3600].find((s) => spanS / s <= 6) || 3600;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const firstTick = Math.ceil(from / (tickS * 1000)) * tickS * 1000;
  for (let t = firstTick; t <= to; t += tickS * 1000) {
    const xx = Math.round(x(t)) + 0.5;
    ctx.strokeStyle = '#f0f2f6';
    ctx.beginPath(); ctx.moveTo(xx, top); ctx.lineTo(xx, top + plotH); ctx.stroke();
    const label = fmtTime(t, false);
    ctx.fillText(tickS >= 60 ? label.slice(0, 5) : label, xx, top + plotH + (band ? bandH + 8 : 5));
  }
  // the up/down band
  if (band && band.length) {
    for (let i = 0; i < band.length; i += 1) {
      const [t, up] = band[i];
      const tEnd = i + 1 < band.length ? band[i + 1][0] : to;
      const x0 = Math.max(left, x(t));
      const x1 = Math.min(left + plotW, x(tEnd));
      if (x1 <= x0) continue;
      ctx.fillStyle = up ? '#3fb97a' : '#d8453c';
      ctx.fillRect(x0, top + plotH + 3, x1 - x0, bandH);
    }
  }
  const hasData = series.some((s) => s.points.length > 1);
  if (!hasData) {
    ctx.fillStyle = '#98a0b0';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = '13px system-ui, sans-serif';
    ctx.fillText('collecting samples…', left + plotW / 2, top + plotH / 2);
    return;
  }
  // the lines, the first one filled
  series.forEach((s, i) => {
    const pts = s.points.filter(([t]) => t >= from - 2000);
    if (pts.length < 2) return;
    const color = CHART_COLORS[i % CHART_COLORS.length];
    ctx.beginPath();
    pts.forEach(([t, v], j) => (j ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();
    if (i === 0) {
      ctx.lineTo(x(pts[pts.length - 1][0]), y(0));
      ctx.lineTo(x(pts[0][0]), y(0));
      ctx.closePath();
      ctx.fillStyle = `${color}1f`;
      ctx.fill();
    }
  });
  // the hovered moment
  if (cursor !== undefined && cursor >= left && cursor <= left + plotW) {
    ctx.strokeStyle = '#8690a3';
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(cursor + 0.5, top); ctx.lineTo(cursor + 0.5, top + plotH); ctx.stroke();
    ctx.setLineDash([]);
  }
  canvas.chartGeometry = { left, plotW, from, to };
}

/** Per-second rates between consecutive samples: [[time_ms, rate]]. */
function ratePoints(samples, field) {
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = (b.time_ms - a.time_ms) / 1000;
    if (dt <= 0) continue;
    out.push([b.time_ms, Math.max(0, b[field] - a[field]) / dt]);
  }
  return out;
}

const pipeline = {
  timer: null,
  windowS: 300,
  samples: [],
  charts: {},

  show() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), PIPELINE_REFRESH_MS);
  },
  hide() { clearInterval(this.timer); this.timer = null; },

  async refresh() {
    const [status, history] = await Promise.all([
      refreshStatus(),
      api('/api/v1/history').catch(() => null),
    ]);
    if (history) this.samples = history.samples || [];
    if (status) { this.cards(status); this.partitions(status); this.bars(status); }
    this.draw();
  },

  cards(s) {
    const rates = s.rates || {};
    const unpublished = s.partitions.reduce((a, p) => a + p.unpublished, 0);
    const used = s.partitions.reduce((a, p) => a + p.used_bytes, 0);
    const capacity = s.partitions.reduce((a, p) => a + p.capacity_bytes, 0);
    const maxLag = Math.max(0, ...s.partitions.map((p) => p.lag_seconds || 0));
    const ch = s.clickhouse;
    const card = (label, value, sub, cls = '') => el('div', { class: `card ${cls}` },
      el('div', { class: 'label' }, label), el('div', { class: 'value', title: value }, value), sub ? el('div', { class: 'sub' }, sub) : null);
    $('#pipe-cards').replaceChildren(
      card('ClickHouse', ch.up ? 'up' : ch.connected ? 'failing' : 'down',
        ch.up ? `${ch.version || ''} · ${ch.delivery === 'exactly_once' ? 'exactly once' : 'at least once'}` : (ch.last_error || 'not connected yet'),
        ch.up ? 'up' : 'down'),
      card('Publishers', s.publishers.running ? (s.publishers.paused ? 'paused' : 'running') : 'waiting',
        s.publishers.paused || `${s.partitions.length} partition${s.partitions.length === 1 ? '' : 's'}`,
        s.publishers.running && !s.publishers.paused ? '' : 'down'),
      card('Ingest', `${fmtRate(rates.appended_per_second)} /s`, `records appended, last ${fmtNum(rates.window_seconds || 0)} s`),
      card('Insert', `${fmtRate(rates.rows_per_second)} rows/s`, 'rows confirmed by ClickHouse'),
      card('Unpublished', fmtNum(unpublished), `oldest ${fmtNum(maxLag, 1)} s behind`),
      card('Log fill', capacity ? `${fmtNum((100 * used) / capacity, 1)} %` : '–', `${fmtBytes(used)} of ${fmtBytes(capacity)}`),
      card('Dead letters', fmtNum(s.dead_letters.total), `${fmtRate(rates.dead_lettered_per_second)} /s now`, s.dead_letters.total ? 'down' : ''),
    );
  },

  partitions(s) {
    const body = $('#pipe-partitions tbody');
    body.replaceChildren(...s.partitions.map((p) => {
      const fill = p.capacity_bytes ? p.used_bytes / p.capacity_bytes : 0;
      const bar = el('div', { class: 'bar-fill' });
      bar.style.width = `${Math.min(100, fill * 100).toFixed(1)}%`;
      const state = [];
      if (p.poisoned) state.push(el('span', { class: 'badge bad' }, 'poisoned'));
      if (p.full) state.push(el('span', { class: 'badge bad' }, 'full'));
      if (p.last_error) state.push(el('span', { class: 'badge warn', title: p.last_error }, 'delivery failing'));
      if (!state.length) state.push(el('span', { class: 'badge ok' }, 'ok'));
      return el('tr', {},
        el('td', {}, String(p.partition)),
        el('td', { class: 'num' }, fmtNum(p.appended)),
        el('td', { class: 'num' }, fmtNum(p.checkpoint)),
        el('td', { class: 'num' }, fmtNum(p.lag_records)),
        el('td', { class: 'num' }, fmtNum(p.lag_seconds, 1)),
        el('td', {}, el('div', { class: `fill${fill > 0.95 ? ' full' : fill > 0.7 ? ' high' : ''}` },
          el('div', { class: 'bar-track' }, bar), el('span', { class: 'muted' }, `${fmtBytes(p.used_bytes)} / ${fmtBytes(p.capacity_bytes)}`))),
        el('td', { class: 'num' }, fmtNum(p.segments)),
        el('td', { class: 'num' }, fmtNum(p.rows_confirmed)),
        el('td', { class: 'num' }, fmtNum(p.dead_lettered)),
        el('td', {}, state));
    }));
  },

  bars(s) {
    const entries = Object.entries(s.dead_letters.by_category || {});
    const max = Math.max(1, ...entries.map(([, n]) => n));
    $('#dl-bars').replaceChildren(...entries.map(([name, n]) => {
      const fill = el('div', { class: 'bar-fill' });
      fill.style.width = `${((100 * n) / max).toFixed(1)}%`;
      return el('div', {
        class: `bar-row${n ? '' : ' zero'}`, title: `show the ${name} dead letters`,
        onclick: () => { deadLetters.filterTo(name); location.hash = '#dead-letters'; },
      }, el('span', { class: 'bar-name' }, name), el('div', { class: 'bar-track' }, fill), el('span', { class: 'bar-count' }, fmtNum(n)));
    }));
  },

  draw() {
    const to = this.samples.length ? this.samples[this.samples.length - 1].time_ms : Date.now();
    // A daemon younger than the window: the axis spans what there is (a minute at least), so
    // the lines are not squeezed against its right edge.
    const known = this.samples.length ? to - this.samples[0].time_ms : 0;
    const from = to - Math.max(60000, Math.min(this.windowS * 1000, known));
    const visible = this.samples.filter((s) => s.time_ms >= from - 1000);
    const band = visible.map((s) => [s.time_ms, s.clickhouse_up]);
    const defs = {
      rates: { series: [{ name: 'appended /s', points: ratePoints(visible, 'appended') },
        { name: 'rows inserted /s', points: ratePoints(visible, 'rows_confirmed') }], band },
      lag: { series: [{ name: 'unpublished records', points: visible.map((s) => [s.time_ms, s.unpublished]) }], format: (v) => fmtNum(v), integer: true },
      dead: { series: [{ name: 'dead-lettered /s', points: ratePoints(visible, 'dead_lettered') }] },
    };
    for (const [id, def] of Object.entries(defs)) {
      const canvas = $(`#chart-${id}`);
      const last = def.series.map((s) => (s.points.length ? s.points[s.points.length - 1][1] : null));
      $(`#legend-${id}`).replaceChildren(...def.series.map((s, i) => el('span', {},
        el('i', { class: `c${i}` }), `${s.name} `, el('b', {}, last[i] === null ? '–' : (def.format || fmtRate)(last[i])))),
      ...(id === 'rates' ? [el('span', {}, el('i', { class: 'up' }), el('i', { class: 'down' }), 'ClickHouse up / down')] : []));
      this.charts[id] = { ...def, from, to };
      drawChart(canvas, { ...def, from, to, cursor: canvas.cursorX });
    }
  },

  setWindow(seconds) {
    this.windowS = seconds;
    for (const b of document.querySelectorAll('#pipe-window button')) b.classList.toggle('on', Number(b.dataset.seconds) === seconds);
    $('#pipe-window-label').textContent = seconds >= 120 ? `${seconds / 60} minutes` : `${seconds} seconds`;
    this.draw();
  },

  /** The tooltip of the chart under the pointer. */
  hover(canvas, id, event) {
    const chart = this.charts[id];
    const tip = canvas.parentElement.querySelector('.tip') || canvas.parentElement.appendChild(el('div', { class: 'tip' }));
    const geo = canvas.chartGeometry;
    if (!chart || !geo || event.type === 'mouseleave') {
      tip.hidden = true;
      canvas.cursorX = undefined;
      if (chart) drawChart(canvas, chart);
      return;
    }
    const rect = canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const t = geo.from + ((px - geo.left) / geo.plotW) * (geo.to - geo.from);
    const lines = [];
    for (const s of chart.series) {
      let best = null;
      for (const p of s.points) if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
      if (best) lines.push(`${s.name}: ${(chart.format || fmtRate)(best[1])}`);
    }
    if (!lines.length || px < geo.left || px > geo.left + geo.plotW) { tip.hidden = true; return; }
    canvas.cursorX = px;
    drawChart(canvas, { ...chart, cursor: px });
    tip.replaceChildren(el('div', { class: 'muted' }, fmtTime(t, false)), ...lines.map((l) => el('div', {}, l)));
    tip.hidden = false;
    tip.style.left = `${Math.min(px + 24, rect.width - 160)}px`;
    tip.style.top = '40px';
  },
};
tabs.pipeline = pipeline;

// ------------------------------------------------------------------------------------------
// Dead letters: a page at a time (next_after), one in detail, replay and purge
// ------------------------------------------------------------------------------------------

const deadLetters = {
  after: null,
  next: null,
  page: 1,
  entries: [],
  selected: new Set(),
  chosen: null,

  show() { this.load(); },

  filter() {
    const f = $('#dl-filters').elements;
    const out = {};
    if (f.category.value) out.category = f.category.value;
    if (f.partition.value !== '') out.partition = Number(f.partition.value);
    return out;
  },

  filterTo(category) {
    const f = $('#dl-filters').elements;
    this.fillCategories(lastStatus);
    f.category.value = category;
    this.after = null;
    this.page = 1;
    if (currentTab === 'dead-letters') this.load();
  },

  fillCategories(status) {
    const select = $('#dl-filters').elements.category;
    const current = select.value;
    const counts = status ? status.dead_letters.by_category : {};
    const names = Object.keys(counts);
    if (!names.length) return;
    select.replaceChildren(el('option', { value: '' }, `any (${fmtNum(status.dead_letters.total)})`),
      ...names.map((n) => el('option', { value: n }, `${n} (${fmtNum(counts[n])})`)));
    select.value = current;
  },

  async load() {
    this.fillCategories(lastStatus || await refreshStatus());
    const f = $('#dl-filters').elements;
    const q = new URLSearchParams({ limit: f.limit.value });
    for (const [k, v] of Object.entries(this.filter())) q.set(k, v);
    if (this.after) q.set('after', this.after);
    try {
      const page = await api(`/api/v1/dead-letters?${q}`);
      this.entries = page.entries;
      this.next = page.next_after;
      this.selected.clear();
      this.renderTable();
    } catch (e) {
      this.result(`Could not list the dead letters: ${e.message}`, true);
    }
  },

  renderTable() {
    const body = $('#dl-table tbody');
    body.replaceChildren(...this.entries.map((e) => {
      const box = el('input', { type: 'checkbox', 'aria-label': `select ${e.id}` });
      box.checked = this.selected.has(e.id);
      box.addEventListener('click', (ev) => ev.stopPropagation());
      box.addEventListener('change', () => { if (box.checked) this.selected.add(e.id); else this.selected.delete(e.id); this.updateButtons(); });
      const msg = (e.messages || []).join('; ');
      const tr = el('tr', { 'data-id': e.id, onclick: () => this.inspect(e.id) },
        el('td', {}, box),
        el('td', { class: 'cell' }, fmtDateTime(e.received_at_ms)),
        el('td', {}, el('span', { class: 'badge bad' }, e.category)),
        el('td', { class: 'cell' }, e.envelope ? `${e.envelope.method} ${e.envelope.route}` : '–'),
        el('td', { class: 'cell' }, `p${e.partition} · ${e.lsn}${e.event_index !== null && e.event_index !== undefined ? ` #${e.event_index}` : ''}`),
        el('td', { class: 'num attempts' }, fmtNum(e.attempts)),
        el('td', {}, el('div', { class: 'msg', title: msg }, msg)));
      if (e.id === this.chosen) tr.classList.add('chosen');
      return tr;
    }));
    $('#dl-empty').hidden = this.entries.length > 0;
    $('#dl-all').checked = false;
    $('#dl-first').disabled = !this.after;
    $('#dl-next').disabled = !this.next;
    $('#dl-page-info').textContent = this.entries.length
      ? `page ${this.page}: ${this.entries.length} entr${this.entries.length === 1 ? 'y' : 'ies'}${this.next ? ', more after' : ''}` : '';
    this.updateButtons();
  },

  updateButtons() {
    const n = this.selected.size;
    $('#dl-replay-selected').disabled = !n;
    $('#dl-purge-selected').disabled = !n;
    $('#dl-replay-selected').textContent = n ? `Replay selected (${n})` : 'Replay selected';
    $('#dl-purge-selected').textContent = n ? `Purge selected (${n})` : 'Purge selected';
  },

  async inspect(id) {
    this.chosen = id;
    for (const tr of document.querySelectorAll('#dl-table tbody tr')) tr.classList.toggle('chosen', tr.dataset.id === id);
    const pane = $('#dl-detail');
    pane.hidden = false;
    pane.parentElement.classList.add('with-detail');
    pane.replaceChildren(el('p', { class: 'muted' }, 'loading…'));
    let e;
    try { e = await api(`/api/v1/dead-letters/${encodeURIComponent(id)}`); } catch (err) {
      pane.replaceChildren(el('p', { class: 'muted' }, `Could not load ${id}: ${err.message}`));
      return;
    }
    pane.replaceChildren(
      el('header', {}, el('h3', { class: 'mono' }, e.id), el('button', { type: 'button', class: 'link', onclick: () => this.closeDetail() }, 'close')),
      el('span', { class: 'badge bad' }, e.category),
      el('section', {}, el('h4', {}, 'messages'), el('ul', {}, (e.messages || []).map((m) => el('li', {}, m)))),
      el('section', {}, kvGrid([
        ['attempts', e.attempts],
        ['received', fmtDateTime(e.received_at_ms)],
        ['dead-lettered', fmtDateTime(e.time_ms)],
        ['partition · lsn', `${e.partition} · ${e.lsn}`],
        ['event', e.event_index === null || e.event_index === undefined ? 'the whole request' : `#${e.event_index} of the request`],
      ])),
      e.event_payload !== null && e.event_payload !== undefined
        ? el('section', {}, el('h4', {}, 'the event'), typeof e.event_payload === 'object'
          ? jsonTree(e.event_payload, 2) : jsonScalar(e.event_payload, { openDepth: 2 })) : null,
      el('section', {}, el('h4', {}, 'the request, decoded'), e.envelope ? requestView(e.envelope, { full: true })
        : el('pre', { class: 'body' }, e.envelope_base64 || '')),
      el('div', { class: 'actions' },
        el('button', { type: 'button', onclick: () => this.replay({ ids: [e.id] }, 'this entry') }, 'Replay this'),
        el('button', { type: 'button', class: 'danger', onclick: () => this.purge({ ids: [e.id] }, `entry ${e.id}`) }, 'Purge this')),
    );
  },

  closeDetail() {
    this.chosen = null;
    $('#dl-detail').hidden = true;
    $('#dl-detail').parentElement.classList.remove('with-detail');
    for (const tr of document.querySelectorAll('#dl-table tbody tr')) tr.classList.remove('chosen');
  },

  selectionOfFilter() {
    const f = this.filter();
    return Object.keys(f).length ? f : { all: true };
  },

  describe(selection) {
    if (selection.all) return 'every dead letter';
    const parts = [];
    if (selection.category) parts.push(`category ${selection.category}`);
    if (selection.partition !== undefined) parts.push(`partition ${selection.partition}`);
    return `every dead letter with ${parts.join(' and ')}`;
  },

  result(content, bad = false) {
    const box = $('#dl-result');
    box.className = `result${bad ? ' bad' : ''}`;
    // The parts a message leaves out (null, '', false) are not text.
    box.replaceChildren(...[content].flat().filter((c) => c !== null && c !== undefined && c !== false && c !== ''));
    box.hidden = false;
  },

  async replay(selection, what) {
    this.result(`Replaying ${what}…`);
    try {
      const r = await api('/api/v1/dead-letters/replay', { method: 'POST', body: selection });
      const failures = r.failures || [];
      this.result([
        el('b', {}, `Replayed ${what}: `),
        `${fmtNum(r.tried)} tried, ${fmtNum(r.loaded)} loaded (${fmtNum(r.rows)} row${r.rows === 1 ? '' : 's'}), ${fmtNum(r.failed_again)} failed again.`,
        r.failed_again ? ' The ones that failed again stay here with one attempt more.' : '',
        failures.length ? el('ul', {}, failures.slice(0, 20).map((f) => el('li', {}, f))) : null,
      ], r.failed_again > 0);
    } catch (e) {
      this.result(`Replay refused: ${e.message}`, true);
    }
    this.after = null;
    this.page = 1;
    this.closeDetail();
    await refreshStatus();
    this.load();
  },

  async purge(selection, what) {
    const ok = await confirmDialog('Purge dead letters?',
      `This removes ${what} from the dead-letter store for good: their raw requests cannot be replayed afterwards.`, 'Purge');
    if (!ok) return;
    try {
      const r = await api('/api/v1/dead-letters/purge', { method: 'POST', body: selection });
      this.result([el('b', {}, 'Purged: '), `${fmtNum(r.purged)} entr${r.purged === 1 ? 'y' : 'ies'} removed (${what}).`]);
    } catch (e) {
      this.result(`Purge refused: ${e.message}`, true);
    }
    this.after = null;
    this.page = 1;
    this.closeDetail();
    await refreshStatus();
    this.load();
  },
};
tabs['dead-letters'] = deadLetters;

function confirmDialog(title, text, okLabel) {
  const d = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
}

// ------------------------------------------------------------------------------------------
// Events: recent rows of the events table
// ------------------------------------------------------------------------------------------

/** The columns shown unless "all columns" is ticked, in this order, when the table has them. */
const EVENT_COLUMNS = ['collector_tstamp', 'source', 'event', 'app_id', 'platform', 'event_name', 'user_id',
  'anonymous_id', 'domain_userid', 'page_url', 'se_category', 'se_action', 'se_label', 'event_id',
  'contexts', 'unstruct_event', 'properties', 'traits', 'context'];
/** Columns holding JSON text: shown as expandable trees. */
const JSON_COLUMNS = new Set(['contexts', 'derived_contexts', 'unstruct_event', 'properties', 'traits', 'context']);

const events = {
  offset: 0,
  orderBy: null,
  desc: true,
  columns: [],
  rows: [],
  chosen: null,

  show() { this.load(); },

  async load() {
    const f = $('#ev-filters').elements;
    const limit = Number(f.limit.value);
    const q = new URLSearchParams({ limit, offset: this.offset });
    if (this.orderBy) { q.set('order_by', this.orderBy); q.set('desc', String(this.desc)); }
    for (const name of ['app_id', 'event', 'source']) if (f[name].value.trim()) q.set(name, f[name].value.trim());
    const notice = $('#ev-notice');
    try {
      const page = await api(`/api/v1/events?${q}`);
      notice.hidden = true;
      this.columns = page.columns || [];
      this.rows = page.rows || [];
      this.limit = page.limit ?? limit;
      this.offset = page.offset ?? this.offset;
      // The daemon says how it sorted (collector_tstamp, newest first, unless asked).
      if (page.order_by) { this.orderBy = page.order_by; this.desc = page.desc !== false; }
      this.render();
    } catch (e) {
      notice.textContent = e.status === 404
        ? 'This daemon does not serve /api/v1/events (a sluice built before that route existed): query ClickHouse directly, e.g. SELECT * FROM sluice.events ORDER BY collector_tstamp DESC LIMIT 50.'
        : `The events could not be read: ${e.message}`;
      notice.hidden = false;
      this.rows = [];
      this.render();
    }
  },

  visibleColumns() {
    const names = this.columns.map((c) => c.name);
    if ($('#ev-all-columns').checked) return names;
    const chosen = EVENT_COLUMNS.filter((c) => names.includes(c));
    return chosen.length ? chosen : names.slice(0, 12);
  },

  render() {
    const cols = this.visibleColumns();
    const types = Object.fromEntries(this.columns.map((c) => [c.name, c.type]));
    $('#ev-table thead').replaceChildren(el('tr', {}, cols.map((c) => el('th', {
      title: `${c} ${types[c] || ''}: click to sort`,
      onclick: () => this.sort(c),
    }, c, this.orderBy === c ? el('span', { class: 'arrow' }, this.desc ? '▼' : '▲') : null))));
    $('#ev-table tbody').replaceChildren(...this.rows.map((row, i) => {
      const tr = el('tr', { onclick: () => this.inspect(i) }, cols.map((c) => this.cell(c, row[c])));
      if (i === this.chosen) tr.classList.add('chosen');
      return tr;
    }));
    $('#ev-empty').hidden = this.rows.length > 0 || !$('#ev-notice').hidden;
    $('#ev-prev').disabled = this.offset === 0;
    $('#ev-next').disabled = this.rows.length < (this.limit || 1);
    $('#ev-page-info').textContent = this.rows.length
      ? `rows ${fmtNum(this.offset + 1)}–${fmtNum(this.offset + this.rows.length)}${this.orderBy ? `, by ${this.orderBy} ${this.desc ? 'descending' : 'ascending'}` : ', newest first'}` : '';
  },

  cell(name, v) {
    if (!present(v)) return el('td', { class: 'cell' }, el('span', { class: 'null' }, '∅'));
    const parsed = JSON_COLUMNS.has(name) || typeof v === 'object' ? (typeof v === 'object' ? v : parseJsonText(v)) : undefined;
    if (parsed !== undefined) {
      const td = el('td', { class: 'cell wrap' }, jsonTree(parsed, 0));
      td.addEventListener('click', (ev) => ev.stopPropagation());
      return td;
    }
    const text = String(v);
    return el('td', { class: 'cell', title: text }, text);
  },

  sort(column) {
    if (this.orderBy === column) this.desc = !this.desc;
    else { this.orderBy = column; this.desc = true; }
    this.offset = 0;
    this.load();
  },

  page(direction) {
    const limit = this.limit || 50;
    this.offset = Math.max(0, this.offset + direction * limit);
    this.chosen = null;
    this.load();
  },

  inspect(i) {
    this.chosen = i;
    const row = this.rows[i];
    for (const [j, tr] of [...document.querySelectorAll('#ev-table tbody tr')].entries()) tr.classList.toggle('chosen', i === j);
    const pane = $('#ev-detail');
    pane.hidden = false;
    pane.parentElement.classList.add('with-detail');
    const pairs = Object.entries(row).filter(([, v]) => present(v));
    pane.replaceChildren(
      el('header', {}, el('h3', {}, `${row.event || 'row'} · ${row.app_id || ''}`),
        el('button', { type: 'button', class: 'link', onclick: () => {
          pane.hidden = true; pane.parentElement.classList.remove('with-detail'); this.chosen = null; this.render();
        } }, 'close')),
      el('p', { class: 'muted' }, `${pairs.length} of ${Object.keys(row).length} columns have a value`),
      kvGrid(pairs.map(([k, v]) => {
        const parsed = typeof v === 'object' ? v : parseJsonText(v);
        return [k, parsed !== undefined ? jsonTree(parsed, 3) : v];
      })));
  },
};
tabs.events = events;

// ------------------------------------------------------------------------------------------
// Setup: snippets pointed at this collector, and a test event
// ------------------------------------------------------------------------------------------

/** The collector's URL as this browser reaches it: the listener's port, and its host unless it
 * listens on every address (then the host this page was loaded from). */
function collectorUrlFrom(listen) {
  if (!listen) return `${location.protocol}//${location.hostname}:8080`;
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  const port = listen.slice(i + 1);
  if (host === '0.0.0.0' || host === '[::]' || host === '::') host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  return `http://${host}:${port}`;
}

function snippetsFor(base) {
  const u = new URL(base);
  const host = u.hostname;
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  const scheme = u.protocol.replace(':', '');
  const hostPort = u.host;
  return [
    {
      title: 'Snowplow JavaScript tracker', pkg: 'npm @snowplow/browser-tracker',
      text: 'In a web page: page views, clicks and self-describing events, POSTed to /com.snowplowanalytics.snowplow/tp2.',
      code: `import { newTracker, trackPageView, trackStructEvent } from '@snowplow/browser-tracker';

newTracker('sp', '${base}', { appId: 'my-app', platform: 'web' });
trackPageView();
trackStructEvent({ category: 'checkout', action: 'paid', value: 42 });`,
    },
    {
      title: 'Snowplow Node tracker', pkg: 'npm @snowplow/node-tracker',
      text: 'On a server; flush() before the process exits.',
      code: `import { newTracker, buildPageView, buildStructEvent } from '@snowplow/node-tracker';

const tracker = newTracker({ namespace: 'backend', appId: 'my-app' },
  { endpoint: '${host}', port: ${port}, protocol: '${scheme}',
    eventMethod: 'post', bufferSize: 1 });
tracker.track(buildPageView({ pageUrl: 'https://example.com/', pageTitle: 'Hello' }));
tracker.track(buildStructEvent({ category: 'checkout', action: 'paid', value: 42 }));
await tracker.flush();`,
    },
    {
      title: 'Snowplow Python tracker', pkg: 'pip snowplow-tracker',
      code: `from snowplow_tracker import Emitter, Tracker, PageView, StructuredEvent

emitter = Emitter("${host}", protocol="${scheme}", port=${port}, method="post", batch_size=1)
tracker = Tracker(namespace="backend", app_id="my-app", emitters=emitter)
tracker.track(PageView(page_url="https://example.com/", page_title="Hello"))
tracker.track(StructuredEvent(category="checkout", action="paid", value=42.0))
tracker.flush()`,
    },
    {
      title: 'Segment analytics.js', pkg: 'npm @segment/analytics-next',
      text: 'Point the Segment.io destination\'s API host here; pass cdnSettings so nothing is loaded from Segment\'s CDN. Any write key works while segment.write_keys is empty.',
      code: `import { AnalyticsBrowser } from '@segment/analytics-next';

const segmentIo = { apiKey: 'WRITE_KEY', apiHost: '${hostPort}/v1', protocol: '${scheme}' };
const analytics = AnalyticsBrowser.load(
  { writeKey: 'WRITE_KEY', cdnSettings: { integrations: { 'Segment.io': segmentIo } } },
  { integrations: { 'Segment.io': segmentIo } });
analytics.track('Signed Up', { plan: 'pro' });`,
    },
    {
      title: 'Segment Node', pkg: 'npm @segment/analytics-node',
      code: `import { Analytics } from '@segment/analytics-node';

const analytics = new Analytics({ writeKey: 'WRITE_KEY', host: '${base}' });
analytics.track({ userId: 'u1', event: 'Signed Up', properties: { plan: 'pro' } });
await analytics.closeAndFlush();`,
    },
    {
      title: 'Segment Python', pkg: 'pip segment-analytics-python',
      text: 'Posts batches to /v1/batch (gzip=True works too). RudderStack\'s SDKs work the same with dataPlaneUrl.',
      code: `import segment.analytics as analytics

analytics.write_key = "WRITE_KEY"
analytics.host = "${base}"
analytics.track("u1", "Signed Up", {"plan": "pro"})
analytics.flush()`,
    },
    {
      title: 'pycolytics', pkg: 'POST /v1.0/event, /v1.0/events',
      text: 'What pycolytics clients (e.g. its Godot plugin) send: point their server URL here. Add "api_key" to each event when pycolytics.api_keys is set.',
      code: `curl -i -H 'Content-Type: application/json' \\
  -d '{"event_type":"start","application":"game","version":"1.0","platform":"linux","user_id":"u1","session_id":"s1","value":{"level":3}}' \\
  ${base}/v1.0/event`,
    },
    {
      title: 'curl', pkg: 'any HTTP client',
      text: 'A Snowplow pixel, a tp2 batch, a Segment call and a generic JSON object (add X-API-Key when collect.api_keys is set).',
      code: `curl -i '${base}/i?e=pv&p=web&tv=curl&aid=my-app&url=https%3A%2F%2Fexample.com%2F'
curl -i -H 'Content-Type: application/json' \\
  -d '{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"se","p":"srv","tv":"curl","aid":"my-app","se_ca":"demo","se_ac":"click"}]}' \\
  ${base}/com.snowplowanalytics.snowplow/tp2
curl -i -H 'Content-Type: application/json' -d '{"userId":"u1","event":"Signed Up"}' ${base}/v1/track
curl -i -H 'Content-Type: application/json' -d '{"sku":"a1","qty":2}' ${base}/collect/orders`,
    },
  ];
}

const setup = {
  filled: false,

  show() {
    if (!this.filled && lastStatus) this.fill(lastStatus);
    else if (!this.filled) refreshStatus().then((s) => s && this.fill(s));
  },

  fill(status) {
    this.filled = true;
    const input = $('#collector-url');
    const listen = status.collector?.listen;
    input.value = collectorUrlFrom(listen);
    $('#collector-note').textContent = listen ? `(server.listen is ${listen}; edit the URL if clients reach it through a proxy)` : '';
    this.renderSnippets();
  },

  base() { return $('#collector-url').value.trim().replace(/\/+$/, ''); },

  renderSnippets() {
    let list;
    try { list = snippetsFor(this.base()); } catch { return; }
    $('#snippets').replaceChildren(...list.map((s) => {
      const pre = el('pre', {}, s.code);
      const copy = el('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(s.code); copy.textContent = 'Copied'; } catch {
          const range = document.createRange(); range.selectNodeContents(pre);
          getSelection().removeAllRanges(); getSelection().addRange(range); copy.textContent = 'Selected: Ctrl+C';
        }
        setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
      });
      return el('article', { class: 'snippet' },
        el('header', {}, el('h3', {}, s.title), el('span', { class: 'pkg' }, s.pkg), copy),
        s.text ? el('p', {}, s.text) : null, pre);
    }));
  },

  /** A page view sent from this page to the collector's GET /i: the collector answers CORS on
   * its tracking routes, so the page can read the answer. */
  async sendTestEvent() {
    const box = $('#test-result');
    const eid = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const params = new URLSearchParams({
      e: 'pv', tv: 'console', p: 'web', aid: 'sluice-console', eid,
      url: `${location.origin}/console/#setup`, page: 'sluice console test event', dtm: String(Date.now()),
    });
    const url = `${this.base()}/i?${params}`;
    box.hidden = false;
    box.className = 'result';
    box.textContent = 'Sending…';
    try {
      const resp = await fetch(url, { mode: 'cors', cache: 'no-store', credentials: 'omit' });
      if (resp.ok) {
        box.replaceChildren(el('b', {}, `${resp.status}: stored.`), ' A page view with app_id sluice-console and event_id ',
          el('code', {}, eid), ' is durable in the log; watch it in ', el('a', { href: '#live' }, 'Live'),
          ' and, once published, in ', el('a', { href: '#events' }, 'Events'), '.');
      } else {
        const text = await resp.text().catch(() => '');
        box.className = 'result bad';
        box.textContent = `The collector answered ${resp.status}: ${text.slice(0, 300) || resp.statusText}`
          + (resp.status === 401 ? ' (auth.snowplow_keys is set: pixels cannot send keys)' : '');
      }
    } catch (e) {
      box.className = 'result bad';
      box.textContent = `The collector at ${this.base()} could not be reached from this page (${e.message}). `
        + `Is the URL right? If collector.cors.allowed_origins is set, add ${location.origin} to it.`;
    }
  },
};
tabs.setup = setup;

// ------------------------------------------------------------------------------------------
// Wiring
// ------------------------------------------------------------------------------------------

function start() {
  $('#live-filters').addEventListener('submit', (e) => { e.preventDefault(); live.started = true; live.connect(); });
  $('#live-pause').addEventListener('click', () => live.togglePause());
  $('#live-clear').addEventListener('click', () => live.clear());

  for (const b of document.querySelectorAll('#pipe-window button')) {
    b.addEventListener('click', () => pipeline.setWindow(Number(b.dataset.seconds)));
  }
  for (const id of ['rates', 'lag', 'dead']) {
    const canvas = $(`#chart-${id}`);
    canvas.addEventListener('mousemove', (e) => pipeline.hover(canvas, id, e));
    canvas.addEventListener('mouseleave', (e) => pipeline.hover(canvas, id, e));
  }
  window.addEventListener('resize', () => { if (currentTab === 'pipeline') pipeline.draw(); });

  $('#dl-filters').addEventListener('submit', (e) => { e.preventDefault(); deadLetters.after = null; deadLetters.page = 1; deadLetters.load(); });
  $('#dl-first').addEventListener('click', () => { deadLetters.after = null; deadLetters.page = 1; deadLetters.load(); });
  $('#dl-next').addEventListener('click', () => {
    if (!deadLetters.next) return;
    deadLetters.after = deadLetters.next;
    deadLetters.page += 1;
    deadLetters.load();
  });
  $('#dl-all').addEventListener('change', (e) => {
    for (const entry of deadLetters.entries) {
      if (e.target.checked) deadLetters.selected.add(entry.id); else deadLetters.selected.delete(entry.id);
    }
    for (const box of document.querySelectorAll('#dl-table tbody input[type=checkbox]')) box.checked = e.target.checked;
    deadLetters.updateButtons();
  });
  $('#dl-replay-selected').addEventListener('click', () => {
    const n = deadLetters.selected.size;
    deadLetters.replay({ ids: [...deadLetters.selected] }, `${n} selected entr${n === 1 ? 'y' : 'ies'}`);
  });
  $('#dl-purge-selected').addEventListener('click', () => {
    const n = deadLetters.selected.size;
    deadLetters.purge({ ids: [...deadLetters.selected] }, `${n} selected entr${n === 1 ? 'y' : 'ies'}`);
  });
  $('#dl-replay-filter').addEventListener('click', () => {
    const s = deadLetters.selectionOfFilter();
    deadLetters.replay(s, deadLetters.describe(s));
  });
  $('#dl-purge-filter').addEventListener('click', () => {
    const s = deadLetters.selectionOfFilter();
    deadLetters.purge(s, deadLetters.describe(s));
  });

  $('#ev-filters').addEventListener('submit', (e) => { e.preventDefault(); events.offset = 0; events.load(); });
  $('#ev-refresh').addEventListener('click', () => events.load());
  $('#ev-all-columns').addEventListener('change', () => events.render());
  $('#ev-prev').addEventListener('click', () => events.page(-1));
  $('#ev-next').addEventListener('click', () => events.page(1));

  $('#collector-url').addEventListener('input', () => setup.renderSnippets());
  $('#send-test').addEventListener('click', () => setup.sendTestEvent());

  statusListeners.push((s) => { if (!setup.filled) setup.fill(s); });
  statusListeners.push((s) => { if (currentTab !== 'dead-letters') deadLetters.fillCategories(s); });

  window.addEventListener('hashchange', () => showTab(location.hash.slice(1)));
  refreshStatus();
  setInterval(() => { if (currentTab !== 'pipeline' && !document.hidden) refreshStatus(); }, STATUS_REFRESH_MS);
  showTab(location.hash.slice(1) || 'live');
}

document.addEventListener('DOMContentLoaded', start);
