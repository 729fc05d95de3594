// Node `ws` echo server for the benchmark (single-threaded, as Node is).
//   node echo_ws.js                  ws://
//   node echo_ws.js --tls CERT KEY   wss:// (https.createServer + WebSocketServer({server}))
// Prints "listening on PORT".
const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const opts = { maxPayload: 64 << 20, perMessageDeflate: false };
let wss, listening;
if (process.argv[2] === '--tls') {
  const server = https.createServer({ cert: fs.readFileSync(process.argv[3]), key: fs.readFileSync(process.argv[4]) });
  wss = new WebSocketServer({ server, ...opts });
  server.listen(0, '127.0.0.1', () => console.log('listening on ' + server.address().port));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...opts });
  wss.on('listening', () => console.log('listening on ' + wss.address().port));
}
wss.on('connection', (ws) => {
  ws.on('error', () => {}); // a peer's protocol error closes that connection, not the server
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
