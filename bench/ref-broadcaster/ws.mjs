// Reference broadcaster on Node's `ws` package, for the collector benchmark's `fanout-ref`
// phase (BENCHMARKS.md): publishers connect to /publish and send JSON sample events as text
// messages; every event goes to every viewer connected to /live.
//
//   npm ci && node ws.mjs [PORT]     # PORT 0 (the default) picks one; the port is printed
//
// Fairness: like hostwatch's hub (SUBSCRIBER_QUEUE_BYTES, 1 MiB), each viewer has a bounded
// queue, here the socket's unsent bytes (`bufferedAmount`); a viewer that lets it pass 1 MiB is
// dropped with close code 1008 `lagged` instead of buffering without bound. Events are parsed
// once (a bad one closes its publisher with 1007) and forwarded as the bytes received.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const QUEUE_BYTES = 1024 * 1024;
const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: node ws.mjs [PORT]: ${process.argv[2]} is not a port`);
  process.exit(2);
}

const server = http.createServer((_, response) => {
  response.writeHead(404, { 'content-type': 'text/plain' }).end('WebSocket only: /publish, /live\n');
});
const options = { noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 };
const publishers = new WebSocketServer(options);
const viewers = new WebSocketServer(options);

server.on('upgrade', (request, socket, head) => {
  const path = new URL(request.url, 'http://localhost').pathname;
  const endpoint = { '/publish': publishers, '/live': viewers }[path];
  if (!endpoint) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nuse /publish or /live\n');
    return;
  }
  endpoint.handleUpgrade(request, socket, head, (ws) => endpoint.emit('connection', ws, request));
});

publishers.on('connection', (publisher) => {
  publisher.on('message', (data, isBinary) => {
    let event;
    try {
      event = isBinary ? null : JSON.parse(data);
    } catch {
      event = null;
    }
    if (event === null || typeof event !== 'object') {
      publisher.close(1007, 'send JSON objects as text messages');
      return;
    }
    for (const viewer of viewers.clients) {
      if (viewer.readyState !== viewer.OPEN) continue;
      if (viewer.bufferedAmount + data.length > QUEUE_BYTES) {
        viewer.close(1008, 'lagged');
        continue;
      }
      viewer.send(data, { binary: false });
    }
  });
});

viewers.on('connection', (viewer) => {
  viewer.on('message', () => viewer.close(1003, '/live is one-way'));
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
