// Node `ws` echo server, a baseline for `make bench`.
// node ws_echo.mjs PORT [deflate]  — prints PORT once listening; SIGTERM stops it.
// With `deflate`, permessage-deflate is negotiated and every message is sent
// compressed (threshold 0); ws's other defaults stay: zlib level 6 and
// memLevel 8, windows 15, context takeover both ways.
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || 9003);
const mode = process.argv[3] || 'plain';
if (mode !== 'plain' && mode !== 'deflate') {
  console.error(`ws_echo.mjs: unknown mode '${mode}' (plain or deflate)`);
  process.exit(2);
}
const perMessageDeflate = mode === 'deflate' ? { threshold: 0 } : false;
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate, maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log(String(port)));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
