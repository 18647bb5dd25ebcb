// DIY peer for the Nimbus benchmark suite: the same ONNX models in onnxruntime-node
// behind Node's http server, answering the OIP v2 REST infer call with JSON, the way
// a team would write it by hand. One process, one event loop, one ORT session per
// model with one intra-op thread (as Nimbus runs them).
//
//   node server.js [--port 0] NAME=PATH.onnx ...
//
// Prints "listening PORT" on stdout once every model is loaded. bench/ starts it;
// see docs/BENCHMARKS.md.
'use strict';

const http = require('http');
const ort = require('onnxruntime-node');

const args = process.argv.slice(2);
let port = 0;
const models = new Map();

const arrays = {
  FP32: ['float32', Float32Array],
  FP64: ['float64', Float64Array],
  INT32: ['int32', Int32Array],
  INT64: ['int64', BigInt64Array],
};
const datatypes = { float32: 'FP32', float64: 'FP64', int32: 'INT32', int64: 'INT64', bool: 'BOOL' };

function fail(res, code, msg) {
  const body = JSON.stringify({ error: msg });
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function infer(name, session, body, res) {
  const req = JSON.parse(body);
  const feeds = {};
  for (const inp of req.inputs) {
    const t = arrays[inp.datatype];
    if (!t) throw new Error(`unsupported datatype ${inp.datatype}`);
    const data = t[1] === BigInt64Array ? BigInt64Array.from(inp.data, (v) => BigInt(v)) : t[1].from(inp.data);
    feeds[inp.name] = new ort.Tensor(t[0], data, inp.shape);
  }
  const out = await session.run(feeds);
  const outputs = [];
  for (const oname of session.outputNames) {
    const t = out[oname];
    const data = t.type === 'int64' ? Array.from(t.data, Number) : Array.from(t.data);
    outputs.push({ name: oname, datatype: datatypes[t.type] || t.type, shape: t.dims, data });
  }
  const reply = JSON.stringify({ model_name: name, model_version: '1', outputs });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(reply) });
  res.end(reply);
}

async function main() {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') {
      port = Number(args[++i]);
      continue;
    }
    const eq = args[i].indexOf('=');
    if (eq <= 0) throw new Error(`expected NAME=PATH, got ${args[i]}`);
    const session = await ort.InferenceSession.create(args[i].slice(eq + 1), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    models.set(args[i].slice(0, eq), session);
  }
  const server = http.createServer((req, res) => {
    const m = /^\/v2\/models\/([^/]+)\/infer$/.exec(req.url);
    if (req.method === 'GET' && req.url === '/v2/health/ready') {
      res.writeHead(200, { 'Content-Length': 0 });
      return res.end();
    }
    if (req.method !== 'POST' || !m) return fail(res, 404, 'not found');
    const session = models.get(m[1]);
    if (!session) return fail(res, 404, `unknown model ${m[1]}`);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      infer(m[1], session, Buffer.concat(chunks).toString('utf8'), res).catch((e) => fail(res, 400, String(e && e.message)));
    });
  });
  server.keepAliveTimeout = 120000;
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  process.stderr.write(`node peer: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
