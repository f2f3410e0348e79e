'use strict';
// The VNC-like target of bench/relay.sh, two listeners on one stream:
//   node relay_target.js WS_HOST WS_PORT TCP_PORT
// WS_HOST:WS_PORT is a websocket server (what a cluster's websockify is to
// the gateway); 127.0.0.1:TCP_PORT the same stream as raw TCP (what a VNC
// server is to websockify). The client's first byte picks the stream:
//   'F' flood: 1 MiB messages (binary frames on the websocket) as fast as
//       the connection takes them
//   'E' echo:  every later byte (frame payload on the websocket) comes back
// Prints "ready" once both listen.
const net = require('net');
const crypto = require('crypto');

const [host, wsPort, tcpPort] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const MIB = 1 << 20;
const payload = crypto.randomBytes(MIB);
const wsHead = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0]);   // 1 MiB binary frame
const wsFrame = Buffer.concat([wsHead, payload]);

function flood(sock, chunk) {
  const pump = () => {
    while (sock.write(chunk)) { /* until the socket pushes back */ }
  };
  sock.on('drain', pump);
  pump();
}

function serverFrame(data) {
  const n = data.length;
  let head;
  if (n < 126) head = Buffer.from([0x82, n]);
  else if (n < 65536) head = Buffer.from([0x82, 126, n >> 8, n & 255]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x82;
    head[1] = 127;
    head.writeUInt32BE(n, 6);
  }
  return Buffer.concat([head, data]);
}

// masked client frames -> payloads; calls back with each payload
function frameReader(onPayload) {
  let buf = Buffer.alloc(0);
  return (data) => {
    buf = buf.length ? Buffer.concat([buf, data]) : data;
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 127;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = buf.readUInt32BE(6);
        off = 10;
      }
      const masked = (buf[1] & 128) !== 0;
      const total = off + (masked ? 4 : 0) + len;
      if (buf.length < total) return;
      const opcode = buf[0] & 15;
      const p = Buffer.from(buf.subarray(total - len, total));
      if (masked) {
        const key = buf.subarray(off, off + 4);
        for (let i = 0; i < p.length; i += 1) p[i] ^= key[i & 3];
      }
      buf = buf.subarray(total);
      if (opcode === 8) return;
      onPayload(p);
    }
  };
}

const ws = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  let head = '';
  let mode = null;
  let reader = null;
  const onData = (data) => {
    if (reader) { reader(data); return; }
    head += data.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    const key = (head.match(/sec-websocket-key:\s*(\S+)/i) || [])[1] || '';
    const proto = /sec-websocket-protocol:\s*[^\r\n]*binary/i.test(head);
    const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Accept: ${accept}\r\n${proto ? 'Sec-WebSocket-Protocol: binary\r\n' : ''}\r\n`);
    reader = frameReader((p) => {
      if (mode === null) {
        mode = p[0] === 70 ? 'F' : 'E';
        if (mode === 'F') flood(sock, wsFrame);
        if (p.length > 1 && mode === 'E') sock.write(serverFrame(p.subarray(1)));
        return;
      }
      if (mode === 'E') sock.write(serverFrame(p));
    });
    const rest = Buffer.from(head.slice(end + 4), 'latin1');
    if (rest.length) reader(rest);
  };
  sock.on('data', onData);
});

const tcp = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  let mode = null;
  sock.on('data', (data) => {
    if (mode === null) {
      mode = data[0] === 70 ? 'F' : 'E';
      if (mode === 'F') flood(sock, payload);
      else if (data.length > 1) sock.write(data.subarray(1));
      return;
    }
    if (mode === 'E') sock.write(data);
  });
});

let up = 0;
const ready = () => { up += 1; if (up === 2) console.log('ready'); };
ws.listen(wsPort, host, ready);
tcp.listen(tcpPort, '127.0.0.1', ready);
