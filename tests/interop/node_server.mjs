// Node `ws` echo server for the client-direction interop test: libkaze's
// client role (kaze bench) talks to it, with and without permessage-deflate.
// node node_server.mjs PORT — prints PORT once listening; SIGTERM stops it.
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const wss = new WebSocketServer({
  port,
  host: '127.0.0.1',
  perMessageDeflate: { threshold: 0 },
  maxPayload: 64 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log(String(port)));
process.on('SIGTERM', () => process.exit(0));
