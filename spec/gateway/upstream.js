'use strict';
// A target for the gateway specs that records what reaches it.
//   node upstream.js JOB.json
// JOB: { "host": "127.0.0.2", "port": N, "log": FILE,
//        "cert": PEM, "key": PEM (optional: TLS), "min_tls": "TLSv1.3" (optional) }
// Every request (plain or websocket upgrade) is appended to LOG as one JSON
// line {method, path (without the query), headers}. An upgrade gets 101 and
// one text frame holding the JSON of the headers it came with; any other
// request gets 200 and the same JSON. Prints "ready" once it listens.
const fs = require('fs');
const http = require('http');
const https = require('https');
const crypto = require('crypto');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function record(req) {
  const entry = { method: req.method, path: req.url.split('?')[0], headers: req.headers };
  fs.appendFileSync(job.log, JSON.stringify(entry) + '\n');
  return JSON.stringify(req.headers);
}

function frame(text) {
  const data = Buffer.from(text);
  let head;
  if (data.length < 126) {
    head = Buffer.from([0x81, data.length]);
  } else {
    head = Buffer.from([0x81, 126, data.length >> 8, data.length & 255]);
  }
  return Buffer.concat([head, data]);
}

const handler = (req, res) => {
  const body = record(req);
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(body);
};
const server = job.cert
  ? https.createServer({ cert: fs.readFileSync(job.cert), key: fs.readFileSync(job.key),
    minVersion: job.min_tls || 'TLSv1.2' }, handler)
  : http.createServer(handler);
server.on('upgrade', (req, socket) => {
  const body = record(req);
  const accept = crypto.createHash('sha1')
    .update((req.headers['sec-websocket-key'] || '') + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n'
    + 'Connection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  socket.write(frame(body));
  socket.on('error', () => {});
  socket.on('data', () => {});
  setTimeout(() => socket.destroy(), 5000);
});
server.on('tlsClientError', () => {});
server.listen(job.port, job.host, () => console.log('ready'));
