// gRPC peer for tests/e2e/test_http2.py on @grpc/grpc-js (pure JS, plaintext h2c).
//   node grpc_peer.js server <port>
//       threadline.test.Echo: Say (unary; fail_with != 0 answers that status code), Count
//       (server streaming: `times` replies).
//   node grpc_peer.js client <port> say <text> [fail_with] | count <times>
//       one call; prints "ok <replies>" or "error <code>".
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const def = loader.loadSync(path.join(__dirname, 'echo.proto'), {keepCase: true});
const Echo = grpc.loadPackageDefinition(def).threadline.test.Echo;
const [mode, port, ...rest] = process.argv.slice(2);

if (mode === 'server') {
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Say(call, cb) {
      if (call.request.fail_with) return cb({code: call.request.fail_with, details: 'asked to fail'});
      cb(null, {text: 'echo ' + call.request.text});
    },
    Count(call) {
      for (let i = 0; i < call.request.times; i++) call.write({text: String(i)});
      call.end();
    },
  });
  server.bindAsync('127.0.0.1:' + port, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) { console.error(err); process.exit(1); }
  });
} else {
  const client = new Echo('127.0.0.1:' + port, grpc.credentials.createInsecure());
  const [what, arg, fail] = rest;
  const done = (line) => { console.log(line); client.close(); };
  if (what === 'say') {
    client.Say({text: arg, fail_with: Number(fail || 0)}, (err, reply) =>
      done(err ? 'error ' + err.code : 'ok ' + reply.text));
  } else {
    let n = 0;
    const call = client.Count({times: Number(arg)});
    call.on('data', () => n++);
    call.on('error', (err) => done('error ' + err.code));
    call.on('end', () => done('ok ' + n));
  }
}
