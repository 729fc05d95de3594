// Bun echo server for the echo benchmark (Bun.serve's built-in WebSocket
// server, one thread). Prints "listening on PORT".
//   bun echo_bun.js                  ws://
//   bun echo_bun.js --tls CERT KEY   wss:// (Bun.serve's tls option)
const tls = process.argv[2] === '--tls' ? { cert: Bun.file(process.argv[3]), key: Bun.file(process.argv[4]) } : undefined;
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  tls,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response('WebSocket only', { status: 426 });
  },
  websocket: {
    maxPayloadLength: 64 << 20,
    backpressureLimit: 256 << 20, // queue rather than drop echoes
    perMessageDeflate: false,
    message(ws, msg) { ws.send(msg); }, // a string goes back as text, bytes as binary
  },
});
console.log('listening on ' + server.port);
