// A real OTLP receiver for tests/e2e/test_otlp_export.py: @elastic/mockotlpserver, with a small
// front of our own on the ports the exporter is given:
//   - HTTP front: answers 503 (Retry-After: 1) to the first `fail` requests, then forwards each
//     request to mockotlpserver's OTLP/HTTP port, gunzipping a gzip body on the way (the mock
//     does not read Content-Encoding). It reports what the exporter sent (encoding, gzip magic).
//   - gRPC front: answers UNAVAILABLE to the first `fail` calls, then forwards the request bytes
//     unchanged to mockotlpserver's OTLP/gRPC port and its answer back.
// Output, one JSON object per line on stdout:
//   {"event":"listening","grpc":<port>,"http":<port>}
//   {"event":"request","transport":"http"|"grpc","status":<code>,...}
//   {"event":"span","trace_id":..,"span_id":..,"parent_span_id":..,"name":..,"kind":<n>,
//    "start":"<ns>","end":"<ns>","flags":<n>,"status_code":<n>,"status_message":..,
//    "attributes":{..},"resource":{..},"scope":{"name":..,"version":..}}
//
//   node otlp_receiver.js '{"grpcPort":0,"httpPort":0,"fail":0}'
// NODE_PATH must lead to the node_modules holding @elastic/mockotlpserver.
'use strict';

const http = require('http');
const zlib = require('zlib');
const grpc = require('@grpc/grpc-js');
const {MockOtlpServer} = require('@elastic/mockotlpserver');

const opts = Object.assign({grpcPort: 0, httpPort: 0, fail: 0}, JSON.parse(process.argv[2] || '{}'));
let httpFailuresLeft = opts.fail;
let grpcFailuresLeft = opts.fail;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function hex(b) {
    if (b == null) return '';
    if (typeof b === 'string') return b;  // already hex (JSON) or base64: not expected here
    return Buffer.from(b).toString('hex');
}

function str(v) {
    // int64 arrives as a Long, a number or a string depending on the decoder.
    return v == null ? '0' : v.toString();
}

// AnyValue -> JSON: strings and bools as themselves, ints as {"int":"<decimal>"}, doubles as
// {"double":<n>}. protobufjs messages (HTTP) name the set oneof member in `value` and carry
// defaults for the others on their prototype; proto-loader objects (gRPC) hold only the set one.
function anyValue(v) {
    if (v == null) return null;
    const conv = (field, x) => {
        switch (field) {
            case 'stringValue': case 'string_value': return x;
            case 'boolValue': case 'bool_value': return x;
            case 'intValue': case 'int_value': return {int: str(x)};
            case 'doubleValue': case 'double_value': return {double: Number(x)};
            default: return null;
        }
    };
    if (typeof v.value === 'string' && v[v.value] !== undefined) return conv(v.value, v[v.value]);
    for (const field of ['stringValue', 'string_value', 'boolValue', 'bool_value', 'intValue', 'int_value',
        'doubleValue', 'double_value']) {
        if (Object.prototype.hasOwnProperty.call(v, field) && v[field] !== null && v[field] !== undefined) {
            return conv(field, v[field]);
        }
    }
    return null;
}

function attrs(list) {
    const out = {};
    for (const kv of list || []) out[kv.key] = anyValue(kv.value);
    return out;
}

function onTrace(req) {
    const resourceSpans = req.resourceSpans || req.resource_spans || [];
    for (const rs of resourceSpans) {
        const resource = attrs((rs.resource || {}).attributes);
        for (const ss of rs.scopeSpans || rs.scope_spans || []) {
            const scope = ss.scope || {};
            for (const s of ss.spans || []) {
                const status = s.status || {};
                emit({
                    event: 'span',
                    trace_id: hex(s.traceId || s.trace_id),
                    span_id: hex(s.spanId || s.span_id),
                    parent_span_id: hex(s.parentSpanId || s.parent_span_id),
                    name: s.name,
                    kind: typeof s.kind === 'number' ? s.kind : s.kind,
                    start: str(s.startTimeUnixNano || s.start_time_unix_nano),
                    end: str(s.endTimeUnixNano || s.end_time_unix_nano),
                    flags: s.flags || 0,
                    status_code: status.code || 0,
                    status_message: status.message || '',
                    attributes: attrs(s.attributes),
                    resource,
                    scope: {name: scope.name, version: scope.version},
                });
            }
        }
    }
}

function startHttpFront(mockUrl) {
    const target = new URL(String(mockUrl));
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            let body = Buffer.concat(chunks);
            const encoding = req.headers['content-encoding'] || '';
            const report = {
                event: 'request', transport: 'http', path: req.url, method: req.method,
                content_type: req.headers['content-type'] || '', encoding,
                gzip_magic: body.length >= 2 && body[0] === 0x1f && body[1] === 0x8b,
                user_agent: req.headers['user-agent'] || '', authorization: req.headers['authorization'] || '',
            };
            if (httpFailuresLeft > 0) {
                httpFailuresLeft--;
                emit(Object.assign(report, {status: 503}));
                res.writeHead(503, {'Retry-After': '1', 'Content-Type': 'text/plain'});
                res.end('flaky front: try again later\n');
                return;
            }
            if (encoding === 'gzip') {
                try {
                    body = zlib.gunzipSync(body);
                } catch (e) {
                    emit(Object.assign(report, {status: 400, error: String(e)}));
                    res.writeHead(400);
                    res.end();
                    return;
                }
            }
            const headers = {'content-type': req.headers['content-type'] || '', 'content-length': body.length};
            const fwd = http.request({hostname: target.hostname, port: target.port, path: req.url, method: 'POST', headers},
                (up) => {
                    const upChunks = [];
                    up.on('data', (c) => upChunks.push(c));
                    up.on('end', () => {
                        emit(Object.assign(report, {status: up.statusCode}));
                        res.writeHead(up.statusCode, {'content-type': up.headers['content-type'] || 'application/x-protobuf'});
                        res.end(Buffer.concat(upChunks));
                    });
                });
            fwd.on('error', (e) => {
                emit(Object.assign(report, {status: 502, error: String(e)}));
                res.writeHead(502);
                res.end();
            });
            fwd.end(body);
        });
    });
    return new Promise((resolve, reject) => {
        server.on('error', reject);
        server.listen(opts.httpPort, '127.0.0.1', () => resolve(server));
    });
}

const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const passthrough = (b) => b;

function startGrpcFront(mockUrl) {
    const target = new URL(String(mockUrl)).host;
    const client = new grpc.Client(target, grpc.credentials.createInsecure());
    const server = new grpc.Server();
    const service = {
        Export: {
            path: EXPORT_PATH, requestStream: false, responseStream: false,
            requestSerialize: passthrough, requestDeserialize: passthrough,
            responseSerialize: passthrough, responseDeserialize: passthrough,
        },
    };
    server.addService(service, {
        Export(call, callback) {
            const md = call.metadata.getMap();
            const report = {
                event: 'request', transport: 'grpc', api_key: md['x-api-key'] || '',
                user_agent: md['user-agent'] || '', encoding: md['grpc-encoding'] || '',
            };
            if (grpcFailuresLeft > 0) {
                grpcFailuresLeft--;
                emit(Object.assign(report, {status: grpc.status.UNAVAILABLE}));
                callback({code: grpc.status.UNAVAILABLE, details: 'flaky front: try again later'});
                return;
            }
            client.makeUnaryRequest(EXPORT_PATH, passthrough, passthrough, call.request, (err, resp) => {
                emit(Object.assign(report, {status: err ? err.code : 0}));
                callback(err, resp);
            });
        },
    });
    return new Promise((resolve, reject) => {
        server.bindAsync(`127.0.0.1:${opts.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
            if (err) return reject(err);
            resolve(port);  // grpc-js >= 1.10 serves once bound (start() is deprecated)
        });
    });
}

async function main() {
    const mock = new MockOtlpServer({
        logLevel: 'warn', services: ['grpc', 'http'],
        grpcHostname: '127.0.0.1', httpHostname: '127.0.0.1', grpcPort: 0, httpPort: 0, onTrace,
    });
    await mock.start();
    const httpServer = await startHttpFront(mock.httpUrl);
    const grpcPort = await startGrpcFront(mock.grpcUrl);
    emit({event: 'listening', grpc: grpcPort, http: httpServer.address().port});
    const stop = async () => {
        httpServer.close();
        await mock.close();
        process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

main().catch((e) => {
    process.stderr.write(`otlp_receiver: ${e.stack || e}\n`);
    process.exit(1);
});
