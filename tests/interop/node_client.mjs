// Interop: Node's `ws` 8.x (tests/interop/package-lock.json) as a client of
// `kaze echo`.
//
// usage: node node_client.mjs URL MAX_MESSAGE
//
// The server behind URL must be `kaze echo --subprotocol chat --max-message
// MAX_MESSAGE` (tests/interop/run.sh starts one), which negotiates
// permessage-deflate (RFC 7692) by default. Every case runs in each client
// configuration of MODES: permessage-deflate with threshold 0 (ws then
// compresses every message, even empty ones), perMessageDeflate: false (nothing
// offered, nothing may be agreed), and, for the cases in DEFLATE_PARAM_CASES, an
// offer with every parameter set. Each connection checks the server's
// Sec-WebSocket-Extensions answer. Every case opens its own connection, so one
// failure does not hide the next. The last line printed is `N passed, N failed`;
// the exit status is non-zero when any case failed.
import { once } from 'node:events';
import WebSocket from 'ws';

const [URL, MAX_ARG] = process.argv.slice(2);
if (!URL || !MAX_ARG) {
  console.error('usage: node node_client.mjs URL MAX_MESSAGE');
  process.exit(2);
}
const MAX_MESSAGE = Number(MAX_ARG);
const MIB16 = 16 << 20;

// Generous bounds: they only stop a hung case, they never measure speed (the
// ASan build echoes 16 MiB far slower than the release build).
const CASE_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 60_000;

function expect(cond, what) {
  if (!cond) throw new Error(what);
}

function describe(m) {
  return `${m.binary ? 'binary' : 'text'} of ${m.data.length} bytes`;
}

// A connection whose incoming messages, pongs and close are queued for the
// case to await in order.
class Client {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.pongs = [];
    this.waiters = [];
    this.error = null;
    this.closed = null; // {code, reason} once the 'close' event fired
    ws.on('message', (data, isBinary) => this.push('messages', { data, binary: isBinary }));
    ws.on('pong', (data) => this.push('pongs', data));
    ws.on('error', (err) => {
      this.error = err;
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
  }

  push(queue, item) {
    this[queue].push(item);
    this.wake();
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // Resolves with the next item of `queue`; rejects if the connection closes
  // first or nothing comes within STEP_TIMEOUT_MS.
  async next(queue, what) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      if (this[queue].length) return this[queue].shift();
      if (this.closed) {
        const err = this.error ? ` (${this.error.message})` : '';
        throw new Error(`closed with ${this.closed.code} while waiting for ${what}${err}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  recv() {
    return this.next('messages', 'message');
  }

  pong() {
    return this.next('pongs', 'pong');
  }

  send(data, opts) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, opts, (err) => (err ? reject(err) : resolve()));
    });
  }

  // Sends a message and checks that the same message of the same type comes back.
  async echo(data, binary) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
    await this.send(buf, { binary });
    const got = await this.recv();
    const sent = { data: buf, binary };
    expect(got.binary === binary, `sent ${describe(sent)}, got back ${describe(got)}`);
    expect(buf.equals(got.data), `sent ${describe(sent)}, got back different content (${describe(got)})`);
  }

  async waitClosed() {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`not closed within ${STEP_TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.closed;
  }

  // Closes with code/reason and returns the server's answer.
  async close(code, reason) {
    this.ws.close(code, reason);
    return this.waitClosed();
  }

  async closesNormally() {
    const c = await this.close(1000);
    expect(c.code === 1000, `close: server answered ${c.code}, not 1000`);
  }

  terminate() {
    if (!this.closed) this.ws.terminate();
  }
}

const open = [];

// Parses a Sec-WebSocket-Extensions answer of one extension: {name, params}.
function parseAnswer(value) {
  const [name, ...params] = value.split(';').map((p) => p.trim());
  const out = {};
  for (const p of params) {
    const [k, v] = p.split('=').map((x) => x.trim());
    out[k] = v === undefined ? true : v.replace(/^"|"$/g, '');
  }
  return { name, params: out };
}

function deflateAgreed(answer, want = {}) {
  expect(answer !== undefined, 'permessage-deflate offered, the server answered no extension');
  const a = parseAnswer(answer);
  expect(a.name === 'permessage-deflate', `answer '${answer}'`);
  for (const [k, v] of Object.entries(want)) {
    expect(a.params[k] === v, `answer '${answer}': ${k} is ${a.params[k]}, expected ${v}`);
  }
}

const MODES = [
  {
    name: 'deflate',
    options: { perMessageDeflate: { threshold: 0 } },
    check: (answer) => deflateAgreed(answer),
  },
  {
    name: 'no compression',
    options: { perMessageDeflate: false },
    check: (answer) => expect(answer === undefined, `nothing offered, but the server answered '${answer}'`),
  },
  {
    // Every parameter (RFC 7692 7.1); kaze answers what was asked.
    name: 'deflate, no context takeover, windows 10/9',
    options: {
      perMessageDeflate: {
        threshold: 0,
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9,
      },
    },
    check: (answer) => deflateAgreed(answer, {
      server_no_context_takeover: true,
      client_no_context_takeover: true,
      server_max_window_bits: '10',
      client_max_window_bits: '9',
    }),
  },
];
let MODE = MODES[0];

async function connect(protocols) {
  const ws = new WebSocket(URL, protocols, { handshakeTimeout: 30_000, maxPayload: 0, ...MODE.options });
  let answer;
  ws.on('upgrade', (res) => {
    answer = res.headers['sec-websocket-extensions'];
  });
  const c = new Client(ws);
  open.push(c);
  try {
    await once(ws, 'open'); // rejects on 'error'
  } catch (err) {
    throw new Error(`handshake: ${err.message}`);
  }
  MODE.check(answer);
  return c;
}

// Valid UTF-8 text of exactly n bytes, with 1- to 4-byte characters throughout.
function textOfBytes(n) {
  const unit = Buffer.from('kaze é ß ж 世界 ☃ 🌍 ~ ', 'utf8');
  const buf = Buffer.alloc(n, 'x');
  for (let off = 0; off + unit.length <= n; off += unit.length) unit.copy(buf, off);
  return buf;
}

// A deterministic pseudo-random buffer (xorshift32).
function pseudoRandom(n, seed) {
  const buf = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

// ---- the cases --------------------------------------------------------------

async function caseText() {
  const c = await connect();
  expect(c.ws.protocol === '', `no subprotocol offered, server chose '${c.ws.protocol}'`);
  await c.echo('hello, kaze', false);
  await c.echo('x'.repeat(125), false); // largest 7-bit length
  await c.echo('y'.repeat(126), false); // 16-bit length
  await c.echo('z'.repeat(65536), false); // 64-bit length
  await c.closesNormally();
}

async function caseBinary() {
  const c = await connect();
  await c.echo(Buffer.from([...Array(256).keys()]), true);
  await c.echo(Buffer.alloc(126), true);
  await c.echo(pseudoRandom(70000, 1), true);
  await c.closesNormally();
}

async function caseEmpty() {
  const c = await connect();
  await c.echo('', false);
  await c.echo(Buffer.alloc(0), true);
  await c.echo('after empty', false);
  await c.closesNormally();
}

async function caseFragmented() {
  const c = await connect();
  const parts = ['frag', 'mented ', '', 'téxt 🌍', '!'];
  for (let i = 0; i < parts.length; i++) {
    await c.send(Buffer.from(parts[i]), { binary: false, fin: i === parts.length - 1 });
  }
  let got = await c.recv();
  expect(!got.binary && got.data.toString() === parts.join(''),
    `fragmented text came back as ${describe(got)} '${got.data.toString()}'`);

  const bparts = [...Array(10).keys()].map((i) => Buffer.alloc(i * 1000, i));
  for (let i = 0; i < bparts.length; i++) {
    await c.send(bparts[i], { binary: true, fin: i === bparts.length - 1 });
  }
  got = await c.recv();
  expect(got.binary && got.data.equals(Buffer.concat(bparts)), `fragmented binary came back as ${describe(got)}`);
  await c.echo('after fragments', false);
  await c.closesNormally();
}

async function caseFragmentedUtf8Split() {
  // A 4-byte character split across three frames: the server must carry its
  // UTF-8 state from frame to frame.
  const data = Buffer.from('a🌍b', 'utf8'); // 61 f0 9f 8c 8d 62
  const c = await connect();
  await c.send(data.subarray(0, 2), { binary: false, fin: false });
  await c.send(data.subarray(2, 4), { fin: false });
  await c.send(data.subarray(4), { fin: true });
  const got = await c.recv();
  expect(!got.binary && got.data.equals(data), `came back as ${describe(got)} '${got.data.toString()}'`);
  await c.closesNormally();
}

async function case16MiBText() {
  const c = await connect();
  await c.echo(textOfBytes(MIB16), false);
  await c.echo('small after big', false);
  await c.closesNormally();
}

async function case16MiBBinary() {
  const c = await connect();
  await c.echo(pseudoRandom(MIB16, 16), true);
  await c.echo(Buffer.from('small after big'), true);
  await c.closesNormally();
}

async function caseManyInFlight() {
  const sizes = [0, 1, 7, 125, 126, 1000, 4096, 20000];
  const msgs = [];
  for (let i = 0; i < 2000; i++) {
    const n = sizes[(i * 7 + (i >> 3)) % sizes.length];
    if (i % 2) {
      msgs.push({ data: Buffer.from(`${i}:` + 'm'.repeat(n)), binary: false });
    } else {
      const b = Buffer.alloc(4 + n, i & 0xff);
      b.writeUInt32BE(i, 0);
      msgs.push({ data: b, binary: true });
    }
  }
  const c = await connect();
  // All sent at once, without waiting for echoes: ws queues them.
  const sent = Promise.all(msgs.map((m) => c.send(m.data, { binary: m.binary })));
  for (let i = 0; i < msgs.length; i++) {
    const got = await c.recv();
    expect(got.binary === msgs[i].binary && got.data.equals(msgs[i].data),
      `message ${i}: sent ${describe(msgs[i])}, got ${describe(got)}`);
  }
  await sent;
  await c.closesNormally();
}

async function casePing() {
  const c = await connect();
  c.ws.ping(Buffer.from('kaze-ping'));
  let p = await c.pong();
  expect(p.toString() === 'kaze-ping', `pong carried '${p.toString()}'`);
  c.ws.ping(); // empty payload
  p = await c.pong();
  expect(p.length === 0, `pong to an empty ping carried ${p.length} bytes`);
  // A ping between the frames of a fragmented message.
  await c.send(Buffer.from('be'), { binary: false, fin: false });
  c.ws.ping(Buffer.from('mid-message'));
  await c.send(Buffer.from('tween'), { fin: true });
  p = await c.pong();
  expect(p.toString() === 'mid-message', `pong carried '${p.toString()}'`);
  const got = await c.recv();
  expect(!got.binary && got.data.toString() === 'between', `message around the ping came back as '${got.data}'`);
  await c.closesNormally();
}

async function caseUtf8() {
  const samples = [
    'héllo wörld',
    '日本語のテキスト',
    '🌍🚀🎉',
    '\u007f\u0080\u07ff\u0800\ufffd\uffff\ue000\u{10000}\u{10ffff}',
    'mixed: aé世🌍'.repeat(1000),
  ];
  const c = await connect();
  for (const s of samples) await c.echo(s, false);
  await c.closesNormally();
}

async function caseSubprotocol() {
  let c = await connect(['chat']);
  expect(c.ws.protocol === 'chat', `offered chat, server chose '${c.ws.protocol}'`);
  await c.echo('chatting', false);
  await c.closesNormally();
  c = await connect(['superchat', 'chat']);
  expect(c.ws.protocol === 'chat', `offered superchat, chat; server chose '${c.ws.protocol}'`);
  await c.closesNormally();
}

async function caseClose1000() {
  const c = await connect();
  await c.echo('bye', false);
  const r = await c.close(1000);
  expect(r.code === 1000, `server answered ${r.code}, not 1000`);
}

async function caseClose4001Reason() {
  const c = await connect();
  const r = await c.close(4001, 'done here');
  expect(r.code === 4001, `server answered ${r.code}, not 4001`);
  console.log(`    (server's close reason: '${r.reason}')`);
}

async function caseTooBig1009() {
  const c = await connect();
  // The send may fail once the server has closed; the close code is what counts.
  c.send(Buffer.alloc(MAX_MESSAGE + 1, 'a'), { binary: false }).catch(() => {});
  const r = await c.waitClosed();
  expect(c.messages.length === 0, 'the message over --max-message came back');
  const err = c.error ? ` (error: ${c.error.message})` : '';
  expect(r.code === 1009, `closed with ${r.code}, not 1009${err}`);
}

async function caseRepeats() {
  // The same 100 KiB five times and variations of it: with context takeover each
  // side's compressor refers back into earlier messages.
  const base = textOfBytes(100_000);
  const changed = Buffer.concat([base.subarray(0, 50_000), Buffer.from('changed'), base.subarray(50_007)]);
  const c = await connect();
  for (const m of [base, base, Buffer.from(base).reverse(), changed, base]) {
    await c.echo(m, true);
  }
  await c.echo(base, false);
  await c.closesNormally();
}

async function caseAliveAfterAll() {
  const c = await connect();
  await c.echo('still here', false);
  await c.closesNormally();
}

const CASES = [
  ['text', caseText],
  ['binary', caseBinary],
  ['empty messages', caseEmpty],
  ['fragmented text and binary', caseFragmented],
  ['UTF-8 character split across fragments', caseFragmentedUtf8Split],
  ['16 MiB text', case16MiBText],
  ['16 MiB binary', case16MiBBinary],
  ['2000 messages in flight', caseManyInFlight],
  ['ping and pong', casePing],
  ['UTF-8 multi-byte text', caseUtf8],
  ['subprotocol chat', caseSubprotocol],
  ['close 1000', caseClose1000],
  ['close 4001 with reason', caseClose4001Reason],
  ['message over --max-message closes 1009', caseTooBig1009],
  ['repeated 100 KiB messages', caseRepeats],
  ['server still serves afterwards', caseAliveAfterAll],
];

// The cases that also run with every permessage-deflate parameter set.
const DEFLATE_PARAM_CASES = new Set(['text', 'binary', 'empty messages', 'fragmented text and binary',
  'UTF-8 character split across fragments', '16 MiB text', '2000 messages in flight',
  'message over --max-message closes 1009', 'repeated 100 KiB messages']);

let passed = 0;
let failed = 0;
for (const mode of MODES) {
  MODE = mode;
  for (const [name, fn] of CASES) {
    if (mode === MODES[2] && !DEFLATE_PARAM_CASES.has(name)) continue;
    const label = `[${mode.name}] ${name}`;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no result within ${CASE_TIMEOUT_MS / 1000} s`)), CASE_TIMEOUT_MS);
    });
    try {
      await Promise.race([fn(), timeout]);
      passed++;
      console.log(`ok   ${label}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${label}: ${e.message}`);
    } finally {
      clearTimeout(timer);
      // A failed case may leave its connection open: drop it.
      while (open.length) open.pop().terminate();
    }
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
