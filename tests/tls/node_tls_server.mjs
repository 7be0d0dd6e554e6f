// TLS tests: a Node `ws` 8.x (tests/tls/package-lock.json) echo server over
// wss://, for `kaze client` to talk to.
//
//   node node_tls_server.mjs CERT KEY
//
// Listens on 127.0.0.1, on a port the system picks, and prints that port as the
// first line. Then, for every connection, one line "conn sni=NAME ext=EXTENSIONS"
// (NAME: the server name the client sent in its TLS hello, or - for none;
// EXTENSIONS: what was agreed, or - for none). Echoes every message with its
// type; permessage-deflate with threshold 0 (every message compressed once
// agreed). SIGTERM stops it.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocketServer } from 'ws';

const [cert, key] = process.argv.slice(2);
if (!cert || !key) {
  console.error('usage: node node_tls_server.mjs CERT KEY');
  process.exit(2);
}
const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) });
const wss = new WebSocketServer({ server, perMessageDeflate: { threshold: 0 }, maxPayload: 64 << 20 });
wss.on('connection', (ws, req) => {
  const ext = Object.keys(ws.extensions ? parseExt(ws.extensions) : {}).join(',') || '-';
  console.log(`conn sni=${req.socket.servername || '-'} ext=${ext}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

// ws.extensions is the Sec-WebSocket-Extensions value the server answered.
function parseExt(value) {
  const out = {};
  for (const e of value.split(',')) {
    const name = e.split(';')[0].trim();
    if (name) out[name] = true;
  }
  return out;
}

server.listen(0, '127.0.0.1', () => console.log(String(server.address().port)));
process.on('SIGTERM', () => process.exit(0));
