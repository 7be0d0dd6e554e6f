// TLS tests: Node's `ws` 8.x (tests/tls/package-lock.json) as a client of
// `kaze echo` over wss://, verifying the server's certificate against the
// test CA (make_certs.sh) and its host name, as Node does by default.
//
//   node node_tls_client.mjs URL CA
//
// The server must be `kaze echo --subprotocol chat` with a certificate from CA.
// Every case runs with permessage-deflate offered (threshold 0: every message
// compressed once agreed) and not offered, and checks what was agreed. Prints
// a line per case, then "N passed, N failed"; exit status 1 if any failed.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const [URL, CA] = process.argv.slice(2);
if (!URL || !CA) {
  console.error('usage: node node_tls_client.mjs URL CA');
  process.exit(2);
}
const ca = readFileSync(CA);
const CASE_TIMEOUT_MS = 60_000;
const MIB4 = 4 << 20;

function expect(cond, what) {
  if (!cond) throw new Error(what);
}

function describe(m) {
  return `${m.binary ? 'binary' : 'text'} of ${m.data.length} bytes`;
}

// A connection whose messages and close are queued for the case to await.
class Client {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closed = null;
    ws.on('message', (data, binary) => {
      this.messages.push({ data, binary });
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', (err) => {
      this.error = err;
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  async next(what, ready) {
    while (!ready()) {
      if (this.closed) {
        const err = this.error ? ` (${this.error.message})` : '';
        throw new Error(`closed with ${this.closed.code} while waiting for ${what}${err}`);
      }
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  async recv() {
    await this.next('a message', () => this.messages.length > 0);
    return this.messages.shift();
  }

  send(data, opts) {
    return new Promise((resolve, reject) => this.ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
  }

  async echo(data, binary) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    await this.send(buf, { binary });
    const got = await this.recv();
    const sent = { data: buf, binary };
    expect(got.binary === binary, `sent ${describe(sent)}, got back ${describe(got)}`);
    expect(buf.equals(got.data), `sent ${describe(sent)}, got back different content (${describe(got)})`);
  }

  async closesNormally() {
    this.ws.close(1000);
    await this.next('the close', () => this.closed);
    expect(this.closed.code === 1000, `close: server answered ${this.closed.code}, not 1000`);
  }
}

const open = [];
let deflate = true;

async function connect(protocols) {
  const ws = new WebSocket(URL, protocols, {
    ca,
    handshakeTimeout: 20_000,
    maxPayload: 0,
    perMessageDeflate: deflate ? { threshold: 0 } : false,
  });
  let answer;
  ws.on('upgrade', (res) => {
    answer = res.headers['sec-websocket-extensions'];
  });
  const c = new Client(ws);
  open.push(c);
  try {
    await once(ws, 'open');
  } catch (err) {
    throw new Error(`handshake: ${err.message}`);
  }
  const sock = ws._socket;
  expect(sock.encrypted && sock.authorized, `TLS not verified: ${sock.authorizationError}`);
  expect(['TLSv1.2', 'TLSv1.3'].includes(sock.getProtocol()), `TLS version ${sock.getProtocol()}`);
  if (deflate) {
    expect(answer && answer.split(';')[0].trim() === 'permessage-deflate',
      `permessage-deflate offered, server answered '${answer}'`);
  } else {
    expect(answer === undefined, `nothing offered, server answered '${answer}'`);
  }
  return c;
}

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

function textOfBytes(n) {
  const unit = Buffer.from('kaze é ß ж 世界 ☃ 🌍 ~ ', 'utf8');
  const buf = Buffer.alloc(n, 'x');
  for (let off = 0; off + unit.length <= n; off += unit.length) unit.copy(buf, off);
  return buf;
}

async function caseText() {
  const c = await connect();
  expect(c.ws.protocol === '', `no subprotocol offered, server chose '${c.ws.protocol}'`);
  for (const m of ['hello over TLS', 'x'.repeat(125), 'y'.repeat(126), 'z'.repeat(65536), '']) {
    await c.echo(m, false);
  }
  await c.closesNormally();
}

async function caseBinary() {
  const c = await connect();
  await c.echo(Buffer.from([...Array(256).keys()]), true);
  await c.echo(Buffer.alloc(0), true);
  await c.echo(pseudoRandom(70000, 1), true);
  await c.closesNormally();
}

async function case4MiB() {
  const c = await connect();
  await c.echo(textOfBytes(MIB4), false);
  await c.echo(pseudoRandom(MIB4, 4), true);
  await c.echo('small after big', false);
  await c.closesNormally();
}

async function caseMany() {
  const sizes = [0, 1, 125, 126, 1000, 4096, 20000, 70000];
  const msgs = [];
  for (let i = 0; i < 1000; i++) {
    const n = sizes[(i * 7 + (i >> 3)) % sizes.length];
    if (i % 2) msgs.push({ data: Buffer.from(`${i}:` + 'm'.repeat(n)), binary: false });
    else msgs.push({ data: pseudoRandom(4 + n, i + 1), binary: true });
  }
  const c = await connect();
  const sent = Promise.all(msgs.map((m) => c.send(m.data, { binary: m.binary })));
  for (let i = 0; i < msgs.length; i++) {
    const got = await c.recv();
    expect(got.binary === msgs[i].binary && got.data.equals(msgs[i].data),
      `message ${i}: sent ${describe(msgs[i])}, got ${describe(got)}`);
  }
  await sent;
  await c.closesNormally();
}

async function caseSubprotocol() {
  const c = await connect(['superchat', 'chat']);
  expect(c.ws.protocol === 'chat', `offered superchat, chat; server chose '${c.ws.protocol}'`);
  await c.echo('chatting', false);
  await c.closesNormally();
}

const CASES = [
  ['text', caseText],
  ['binary', caseBinary],
  ['4 MiB text and binary', case4MiB],
  ['1000 messages in flight', caseMany],
  ['subprotocol chat', caseSubprotocol],
];

let passed = 0;
let failed = 0;
async function run(label, fn) {
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
    while (open.length) {
      const c = open.pop();
      if (!c.closed) c.ws.terminate();
    }
  }
}

for (const d of [true, false]) {
  deflate = d;
  for (const [name, fn] of CASES) await run(`node [${d ? 'deflate' : 'no compression'}] ${name}`, fn);
}
await run('node: without the test CA the certificate is refused', async () => {
  const ws = new WebSocket(URL, { handshakeTimeout: 20_000 });
  const err = await new Promise((resolve) => {
    ws.on('error', resolve);
    ws.on('open', () => resolve(null));
  });
  ws.terminate();
  expect(err, 'connected without trusting the test CA');
  expect(/certificate|self.signed|issuer/i.test(err.message), `refused, but for another reason: ${err.message}`);
});
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
