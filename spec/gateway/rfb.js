'use strict';
// A minimal RFB 3.8 server for the relay specs: security None, a 64x48
// framebuffer, and a record of every client message it receives.
//   node rfb.js PORT LOG
// Each client message becomes one JSON line in LOG: {conn, type, name}
// (SetPixelFormat 0, SetEncodings 2, FramebufferUpdateRequest 3, KeyEvent
// 4, PointerEvent 5, ClientCutText 6); "open" and "close" lines mark
// connections, an "init" line the ClientInit's shared flag. A
// FramebufferUpdateRequest is answered with an empty
// FramebufferUpdate (0 rectangles); with a third argument "full", a
// non-incremental one is answered with one Raw rectangle of the area asked
// for (32 bits a pixel). SetEncodings lines list the encodings. A
// ClientCutText "bye" ends the connection (the VM's side closing). Prints
// "ready" once it listens.
const fs = require('fs');
const net = require('net');

const port = Number(process.argv[2]);
const log = process.argv[3];
const full = process.argv[4] === 'full';
const NAMES = { 0: 'SetPixelFormat', 2: 'SetEncodings', 3: 'FramebufferUpdateRequest',
  4: 'KeyEvent', 5: 'PointerEvent', 6: 'ClientCutText' };
let next = 0;

function record(entry) {
  fs.appendFileSync(log, JSON.stringify(entry) + '\n');
}

const server = net.createServer((sock) => {
  const conn = ++next;
  let buf = Buffer.alloc(0);
  let phase = 'version';
  record({ conn, event: 'open' });
  sock.on('error', () => {});
  sock.on('close', () => record({ conn, event: 'close' }));
  sock.write('RFB 003.008\n');
  sock.on('data', (data) => {
    buf = Buffer.concat([buf, data]);
    for (;;) {
      if (phase === 'version') {
        if (buf.length < 12) return;
        buf = buf.subarray(12);
        sock.write(Buffer.from([1, 1]));            // one security type: None
        phase = 'security';
      } else if (phase === 'security') {
        if (buf.length < 1) return;
        buf = buf.subarray(1);
        sock.write(Buffer.from([0, 0, 0, 0]));      // SecurityResult OK
        phase = 'init';
      } else if (phase === 'init') {
        if (buf.length < 1) return;
        record({ conn, event: 'init', shared: buf[0] });
        buf = buf.subarray(1);
        const name = Buffer.from('rfb-spec');
        const init = Buffer.alloc(24);
        init.writeUInt16BE(64, 0);
        init.writeUInt16BE(48, 2);
        Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).copy(init, 4);
        init.writeUInt32BE(name.length, 20);
        sock.write(Buffer.concat([init, name]));
        phase = 'normal';
      } else {
        if (buf.length < 1) return;
        const type = buf[0];
        let len;
        if (type === 0) len = 20;
        else if (type === 2) {
          if (buf.length < 4) return;
          len = 4 + 4 * buf.readUInt16BE(2);
        } else if (type === 3) len = 10;
        else if (type === 4) len = 8;
        else if (type === 5) len = 6;
        else if (type === 6) {
          if (buf.length < 8) return;
          len = 8 + buf.readUInt32BE(4);
        } else {
          record({ conn, type, name: 'unknown' });
          sock.destroy();
          return;
        }
        if (buf.length < len) return;
        const msg = buf.subarray(0, len);
        buf = buf.subarray(len);
        const entry = { conn, type, name: NAMES[type] };
        if (type === 4) entry.key = msg.readUInt32BE(4);
        if (type === 6) entry.text = msg.subarray(8).toString('latin1');
        if (type === 2) {
          entry.encodings = [];
          for (let i = 4; i < len; i += 4) entry.encodings.push(msg.readInt32BE(i));
        }
        record(entry);
        if (type === 3 && full && msg[1] === 0) {     // one Raw rectangle of the area
          const head = Buffer.alloc(16);
          head.writeUInt16BE(1, 2);
          msg.copy(head, 4, 2, 10);
          head.writeInt32BE(0, 12);
          const pixels = Buffer.alloc(msg.readUInt16BE(6) * msg.readUInt16BE(8) * 4, conn);
          sock.write(Buffer.concat([head, pixels]));
        } else if (type === 3) {
          sock.write(Buffer.from([0, 0, 0, 0]));     // FramebufferUpdate, 0 rects
        }
        if (type === 6 && entry.text === 'bye') sock.end();       // the VM ends the console
      }
    }
  });
});
server.listen(port, '127.0.0.1', () => console.log('ready'));
