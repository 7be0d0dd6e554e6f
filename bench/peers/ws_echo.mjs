// Node `ws` echo server, a baseline for `make bench`.
// node ws_echo.mjs PORT  — prints PORT once listening; SIGTERM stops it.
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || 9003);
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log(String(port)));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
