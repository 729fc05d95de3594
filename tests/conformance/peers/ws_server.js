// Echo server on Node `ws` (a peer nobody here wrote: it checks the suite).
// Prints "listening on 127.0.0.1:PORT".
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 << 20, maxFragments: 1 << 20, perMessageDeflate: false });
wss.on('listening', () => console.log('listening on 127.0.0.1:' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('error', () => {});  // a protocol error ends that connection only
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
