// Node `ws` echo server, a baseline for `make bench`.
// node ws_echo.mjs PORT [plain|deflate] [CERT KEY]
//   prints PORT once listening; SIGTERM stops it.
// With `deflate`, permessage-deflate is negotiated and every message is sent
// compressed (threshold 0); ws's other defaults stay: zlib level 6 and
// memLevel 8, windows 15, context takeover both ways.
// With CERT and KEY (PEM files: the chain, the private key) it serves wss://
// from Node's https server with its TLS defaults (TLS 1.2 and 1.3, OpenSSL's
// cipher order, session tickets on).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || 9003);
const mode = process.argv[3] || 'plain';
const [certFile, keyFile] = process.argv.slice(4, 6);
if (mode !== 'plain' && mode !== 'deflate') {
  console.error(`ws_echo.mjs: unknown mode '${mode}' (plain or deflate)`);
  process.exit(2);
}
if (Boolean(certFile) !== Boolean(keyFile)) {
  console.error('ws_echo.mjs: give both CERT and KEY for wss://');
  process.exit(2);
}
const perMessageDeflate = mode === 'deflate' ? { threshold: 0 } : false;
const options = { perMessageDeflate, maxPayload: 64 * 1024 * 1024 };
let wss;
if (certFile) {
  const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
  wss = new WebSocketServer({ server, ...options });
  server.listen(port, '127.0.0.1', () => console.log(String(port)));
} else {
  wss = new WebSocketServer({ port, host: '127.0.0.1', ...options });
  wss.on('listening', () => console.log(String(port)));
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
