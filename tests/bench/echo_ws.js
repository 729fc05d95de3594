// Node `ws` echo server for the benchmark (single-threaded, as Node is).
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 << 20, perMessageDeflate: false });
wss.on('listening', () => console.log('listening on ' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('error', () => {});  // a peer's protocol error closes that connection, not the server
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
