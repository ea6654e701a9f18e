// Sends a fixed set of events to a collector with the official Snowplow Node tracker
// (@snowplow/node-tracker), then prints every HTTP request it made, one JSON object per line:
//   {"method", "url", "body", "status", "sent_at", "acked_at", "sp_cookie"}
// (times in seconds since the epoch). tests/e2e/test_trackers_clickhouse.py runs it and checks
// that every acknowledged event is in ClickHouse with the right values.
//
//   node tests/e2e/js/send.mjs PORT RUN_ID post|get
import { newTracker, buildPageView, buildPagePing, buildStructEvent, buildSelfDescribingEvent,
  buildScreenView, buildEcommerceTransaction, buildEcommerceTransactionItem } from '@snowplow/node-tracker';

const [port, runId, method] = process.argv.slice(2);
if (!port || !runId || !['post', 'get'].includes(method)) {
  console.error('usage: node send.mjs PORT RUN_ID post|get');
  process.exit(2);
}

const requests = [];
// Sees every request the tracker sends and its real answer.
async function recordingFetch(input, options) {
  const body = input.method === 'POST' ? await input.clone().text() : null;
  const sentAt = Date.now() / 1000;
  const response = await fetch(input, options);
  const setCookie = response.headers.get('set-cookie') || '';
  const sp = /(?:^|[;,]\s*)sp=([^;,]*)/.exec(setCookie);
  requests.push({
    method: input.method, url: input.url, body, status: response.status,
    sent_at: sentAt, acked_at: Date.now() / 1000, sp_cookie: sp ? sp[1] : null,
  });
  return response;
}

const tracker = newTracker(
  { namespace: `js-${method}`, appId: 'sluice-e2e-js', encodeBase64: method === 'get' },
  {
    endpoint: '127.0.0.1', protocol: 'http', port: Number(port), eventMethod: method,
    bufferSize: method === 'post' ? 4 : 1, customFetch: recordingFetch, connectionTimeout: 10000,
  },
);
tracker.setUserId(`user-${runId}`);
tracker.setDomainUserId(`duid-${runId}`);
tracker.setSessionId('3b2f1c2e-8d4e-4a4e-9b1f-1d2e3f4a5b6c');
tracker.setSessionIndex(3);
tracker.setNetworkUserId('6c1f1b6e-4a55-4f9e-8a38-2f7c2c1d9e01');

const context = [{ schema: 'iglu:com.acme/js_run/jsonschema/1-0-0', data: { run: runId, method } }];
const pageUrl = `http://shop.sluice.test:8080/js/${runId}?utm_source=node&utm_medium=e2e&utm_campaign=${method}#top`;

tracker.track(buildPageView({ pageUrl, pageTitle: 'JS page', referrer: 'https://search.sluice.test/q?x=1' }), context);
tracker.track(buildPagePing({ pageUrl, minXOffset: 1, maxXOffset: 20, minYOffset: 3, maxYOffset: 400 }));
tracker.track(buildStructEvent({ category: 'js', action: 'click', label: `js-${runId}`, property: 'p', value: 2.5 }), context);
tracker.track(buildSelfDescribingEvent({
  event: { schema: 'iglu:com.acme/js_thing/jsonschema/1-0-2', data: { n: 7, s: 'ünïcode ✓' } },
}), context);
tracker.track(buildScreenView({ name: 'Home', id: '9f3a3c2e-1b2c-4d5e-8f90-a1b2c3d4e5f6' }));
tracker.track(buildEcommerceTransaction({ orderId: `order-js-${runId}`, total: 31.5, tax: 1.5, shipping: 5,
  city: 'Berlin', country: 'DE', currency: 'EUR', affiliation: 'web' }));
tracker.track(buildEcommerceTransactionItem({ orderId: `order-js-${runId}`, sku: 'sku-1', price: 12.5,
  name: 'Widget', category: 'tools', quantity: 2, currency: 'EUR' }));
tracker.track(buildStructEvent({ category: 'js', action: 'last', label: `js-${runId}-last` }), null,
  { type: 'ttm', value: 1700000000123 });

await tracker.flush();
for (const r of requests) {
  process.stdout.write(JSON.stringify(r) + '\n');
}
