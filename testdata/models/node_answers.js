#!/usr/bin/env node
// Runs every case of cases.json through onnxruntime-node (the Node peer's, in
// bench/peers/node) and writes its answers to node_answers.json, in the same
// format: the runtime tests compare Nimbus's answers with these, so that every
// model is checked against a second ONNX Runtime front end, not only against
// numpy. `make models` runs it after gen_models.py.
//
// onnxruntime-node has no bfloat16 tensors and opens no model that has one:
// such models (scalars_bf16, dynamic_bf16) get null answers, and numpy's values
// in cases.json alone check them. Its JS API also refuses a run that leaves an
// optional input out: that case gets a null answer too.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '../../bench/peers/node/node_modules/onnxruntime-node'));

const types = {
  BOOL: ['bool', (d) => Uint8Array.from(d, (v) => (v ? 1 : 0))],
  UINT8: ['uint8', (d) => Uint8Array.from(d)],
  UINT16: ['uint16', (d) => Uint16Array.from(d)],
  UINT32: ['uint32', (d) => Uint32Array.from(d)],
  UINT64: ['uint64', (d) => BigUint64Array.from(d, (v) => BigInt(v))],
  INT8: ['int8', (d) => Int8Array.from(d)],
  INT16: ['int16', (d) => Int16Array.from(d)],
  INT32: ['int32', (d) => Int32Array.from(d)],
  INT64: ['int64', (d) => BigInt64Array.from(d, (v) => BigInt(v))],
  FP16: ['float16', (d) => Uint16Array.from(d)], // bit patterns, as in cases.json
  FP32: ['float32', (d) => Float32Array.from(d)],
  FP64: ['float64', (d) => Float64Array.from(d)],
  BYTES: ['string', (d) => d.slice()],
};
const oipName = Object.fromEntries(Object.entries(types).map(([k, [t]]) => [t, k]));

// cases.json keeps 64-bit integers exact; JSON.parse would round them.
function parseExact(text) {
  return JSON.parse(text.replace(/("data": \[)([^\]]*)(\])/g, (m, open, body, close) => {
    if (!/\d{16,}/.test(body)) return m;
    return open + body.replace(/(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/g, (n) => JSON.stringify('__big__' + n)) + close;
  }), (k, v) => (typeof v === 'string' && v.startsWith('__big__') ? BigInt(v.slice(7)) : v));
}

function toCase(t) {
  let data;
  if (t.type === 'bool') data = Array.from(t.data, (v) => v !== 0);
  else if (t.type === 'float16') data = Array.from(new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.length));
  else if (t.type === 'string') data = Array.from(t.data);
  else data = Array.from(t.data);
  return { datatype: oipName[t.type], shape: t.dims.map(Number), data };
}

async function main() {
  const here = __dirname;
  const cases = parseExact(fs.readFileSync(path.join(here, 'cases.json'), 'utf8'));
  const answers = {};
  for (const [model, list] of Object.entries(cases)) {
    const hasBF16 = list.some((c) => [...Object.values(c.inputs), ...Object.values(c.outputs)].some((t) => t.datatype === 'BF16'));
    if (hasBF16) {
      answers[model] = list.map(() => null);
      continue;
    }
    const session = await ort.InferenceSession.create(path.join(here, model + '.onnx'));
    answers[model] = [];
    for (const c of list) {
      if (session.inputNames.some((n) => !(n in c.inputs))) {
        // onnxruntime-common refuses a run that leaves an input out, optional or not.
        answers[model].push(null);
        continue;
      }
      const feeds = {};
      for (const [name, t] of Object.entries(c.inputs)) {
        const [type, make] = types[t.datatype];
        feeds[name] = new ort.Tensor(type, make(t.data), t.shape);
      }
      const fetches = Object.keys(c.outputs);
      const got = await session.run(feeds, fetches);
      const outputs = {};
      for (const name of fetches) outputs[name] = toCase(got[name]);
      answers[model].push({ outputs });
    }
    await session.release();
  }
  const text = JSON.stringify(answers, (k, v) => (typeof v === 'bigint' ? '__big__' + v : v), 1)
    .replace(/"__big__(-?\d+)"/g, '$1');
  fs.writeFileSync(path.join(here, 'node_answers.json'), text + '\n');
  console.log('node_answers.json: ' + Object.keys(answers).length + ' models, onnxruntime-node ' + ort.env.versions.node);
}

main().catch((e) => {
  console.error('node_answers: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
