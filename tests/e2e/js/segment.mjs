// Sends one message of every Segment call type (identify, track, page, screen, group, alias) to a
// collector with the official Segment Node SDK (@segment/analytics-node), then prints every HTTP
// request it made, one JSON object per line:
//   {"method", "url", "headers", "body", "status", "response_headers", "sent_at", "acked_at"}
// (times in seconds since the epoch), and a last line {"errors": [...]} with the SDK's own
// delivery errors. tests/e2e/test_segment_sdks_clickhouse.py runs it and checks that every
// acknowledged message is in ClickHouse with the right values.
//
// With a fourth argument N, it instead sends N track calls, one per request (flushAt 1), all at
// once: the rate-limit test's burst.
//
//   node tests/e2e/js/segment.mjs HOST_URL WRITE_KEY RUN_ID [N]
import { Analytics } from '@segment/analytics-node';

const [host, writeKey, runId, burst] = process.argv.slice(2);
if (!host || !writeKey || !runId || (burst !== undefined && !(Number(burst) > 0))) {
  console.error('usage: node segment.mjs HOST_URL WRITE_KEY RUN_ID [N]');
  process.exit(2);
}

const requests = [];
// The SDK's HTTP client, recording every request and its real answer.
const recordingClient = {
  async makeRequest(options) {
    const sentAt = Date.now() / 1000;
    const response = await fetch(options.url, {
      method: options.method,
      headers: options.headers,
      body: options.body,
      signal: AbortSignal.timeout(options.httpRequestTimeout),
    });
    const text = await response.clone().text();
    requests.push({
      method: options.method, url: options.url, headers: options.headers, body: options.body,
      status: response.status, response_headers: Object.fromEntries(response.headers.entries()),
      response_text: text, sent_at: sentAt, acked_at: Date.now() / 1000,
    });
    return response;
  },
};

const errors = [];
const analytics = new Analytics({
  writeKey, host, flushAt: burst ? 1 : 3, flushInterval: 200, maxRetries: 3, httpRequestTimeout: 10000,
  httpClient: recordingClient,
});
analytics.on('error', (err) => errors.push(String(err && (err.reason || err.message || err.code) || err)));

const userId = `node-user-${runId}`;
const anonymousId = `node-anon-${runId}`;
const context = {
  page: {
    url: `https://shop.sluice.test/node/${runId}?ref=x#frag`, title: 'Node page',
    referrer: 'https://search.sluice.test/results?q=node', path: `/node/${runId}`, search: '?ref=x',
  },
  campaign: { source: 'node-news', medium: 'email', name: `node-${runId}`, term: 'nt', content: 'nc' },
  userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  ip: '198.51.100.23',
  app: { name: 'node-shop', version: '7.1.0' },
  locale: 'de-DE',
};

if (burst) {
  for (let i = 0; i < Number(burst); i++) {
    analytics.track({ userId, event: 'Burst', properties: { i } });
  }
} else {
  sendEveryCallType();
}

function sendEveryCallType() {
  analytics.identify({ userId, anonymousId, traits: { plan: 'pro', email: `${runId}@sluice.test`, n: 3 }, context });
  analytics.track({
    userId, event: 'Order Completed',
    properties: { revenue: 31.5, currency: 'EUR', items: [{ sku: 'a', qty: 2 }], s: 'ünïcode ✓' }, context,
  });
  analytics.page({ userId, category: 'Docs', name: 'Pricing', properties: { variant: 'b' }, context });
  analytics.screen({ anonymousId, name: 'Settings', properties: { tab: 'privacy' }, context: { app: context.app, ip: context.ip } });
  analytics.group({ userId, groupId: `node-group-${runId}`, traits: { name: 'Acme', employees: 12 }, context });
  analytics.alias({ userId, previousId: anonymousId, context });
}

await analytics.closeAndFlush({ timeout: 30000 });
for (const r of requests) {
  process.stdout.write(JSON.stringify(r) + '\n');
}
process.stdout.write(JSON.stringify({ errors }) + '\n');
