// A Node service instrumented by the real OpenTelemetry JS SDK (the application's own tracing,
// independent of threadline), for tests/e2e/test_http_spans.py.
//
//   node service.js PORT DOWNSTREAM_BASE_URL
//
// Every request to 127.0.0.1:PORT is forwarded as a GET of DOWNSTREAM_BASE_URL + path; the
// answer is "downstream <status>". The SDK's HTTP instrumentation makes a SERVER span for the
// incoming request and a CLIENT span for the outgoing one, and puts a W3C `traceparent` with
// the CLIENT span's ids on the outgoing request. Each finished SDK span is printed to stdout as
// one JSON line {"sdkSpan": {traceId, spanId, parentSpanId, kind, name}}; the first line is
// {"listening": PORT}.
'use strict';

const { SpanKind } = require('@opentelemetry/api');
const { ExportResultCode } = require('@opentelemetry/core');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');

class StdoutIdsExporter {
  export(spans, done) {
    for (const s of spans) {
      const ctx = s.spanContext();
      const parent = s.parentSpanContext;
      process.stdout.write(JSON.stringify({
        sdkSpan: {
          traceId: ctx.traceId,
          spanId: ctx.spanId,
          parentSpanId: parent ? parent.spanId : null,
          kind: SpanKind[s.kind],
          name: s.name,
        },
      }) + '\n');
    }
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown() { return Promise.resolve(); }
  forceFlush() { return Promise.resolve(); }
}

const provider = new NodeTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(new StdoutIdsExporter())],
});
provider.register();
registerInstrumentations({ instrumentations: [new HttpInstrumentation()] });

// After the instrumentation is registered, so that it patches this module.
const http = require('http');

const [port, downstream] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  const out = http.get(downstream + req.url, { agent: false }, (down) => {
    down.resume();
    down.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`downstream ${down.statusCode}\n`);
    });
  });
  out.on('error', (e) => {
    res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`downstream error ${e.code}\n`);
  });
});
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: Number(port) }) + '\n');
});
process.on('SIGTERM', () => provider.shutdown().finally(() => process.exit(0)));
