// Autobahn client testee on Node `ws` (a peer nobody here wrote: it checks
// the suite). Usage: node ws_client.js URL AGENT
const WebSocket = require('ws');
const [url, agent] = process.argv.slice(2);

function open(path, onMessage) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url + path, { maxPayload: 64 << 20, maxFragments: 1 << 20, perMessageDeflate: false });
    ws.on('message', (data, isBinary) => onMessage(ws, data, isBinary));
    ws.on('error', () => {});
    ws.on('close', resolve);
  });
}

(async () => {
  let count = 0;
  await open('/getCaseCount', (ws, data) => { count = parseInt(data.toString(), 10); });
  for (let n = 1; n <= count; n++) {
    await open(`/runCase?case=${n}&agent=${encodeURIComponent(agent)}`,
      (ws, data, isBinary) => ws.send(data, { binary: isBinary }));
  }
  await open(`/updateReports?agent=${encodeURIComponent(agent)}`, () => {});
})();
