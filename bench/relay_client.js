'use strict';
// The browser side of bench/relay.sh: N websocket sessions at once.
//   node relay_client.js JOB.json
// JOB: { "port": N, "path": "/...", "headers": {..}, "sessions": N,
//        "seconds": S (flood), "rounds": R (echo round trips per session),
//        "hold_ms": M (open the sessions, keep them M ms, close them) }
// Flood: every session asks for 'F' and counts the bytes it receives for S
// seconds: MiB/s in total. Echo: every session asks for 'E' and sends an
// 8-byte message (a PointerEvent's size) R times, one at a time, timing
// each round trip. Prints {"mib_s", "p50_ms", "p99_ms", "errors"}.
const fs = require('fs');
const net = require('net');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const host = job.host || '127.0.0.1';

function clientFrame(payload) {
  const key = Buffer.from([1, 2, 3, 4]);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : Buffer.from([0x82, 0x80 | 126, n >> 8, n & 255]);
  const p = Buffer.from(payload);
  for (let i = 0; i < n; i += 1) p[i] ^= key[i & 3];
  return Buffer.concat([head, key, p]);
}

// Opens one websocket: resolves with {sock, rest} after the 101.
function open() {
  return new Promise((resolve, reject) => {
    const sock = net.connect(job.port, host);
    sock.setNoDelay(true);
    let head = Buffer.alloc(0);
    const lines = [`GET ${job.path} HTTP/1.1`, `Host: ${host}:${job.port}`, 'Upgrade: websocket',
      'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Protocol: binary'];
    for (const [k, v] of Object.entries(job.headers || {})) lines.push(`${k}: ${v}`);
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`${lines.join('\r\n')}\r\n\r\n`));
    const onData = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.removeListener('data', onData);
      const status = head.subarray(0, 12).toString();
      if (!status.includes(' 101')) { sock.destroy(); reject(new Error(status)); return; }
      resolve({ sock, rest: head.subarray(end + 4) });
    };
    sock.on('data', onData);
  });
}

async function flood(seconds) {
  const conns = [];
  for (let i = 0; i < job.sessions; i += 1) conns.push(await open());
  let bytes = 0;
  let counting = false;
  for (const c of conns) {
    c.sock.on('data', (d) => { if (counting) bytes += d.length; });
    c.sock.write(clientFrame(Buffer.from('F')));
  }
  await new Promise((r) => setTimeout(r, 500));   // warm up
  counting = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of conns) c.sock.destroy();
  return bytes / dt / (1 << 20);
}

async function echo(rounds) {
  const conns = [];
  for (let i = 0; i < job.sessions; i += 1) conns.push(await open());
  const times = [];
  const msg = clientFrame(Buffer.from([5, 0, 0, 10, 0, 10, 0, 0]));
  await Promise.all(conns.map(async (c) => {
    c.sock.write(clientFrame(Buffer.from('E')));
    for (let i = 0; i < rounds; i += 1) {
      const t0 = process.hrtime.bigint();
      await new Promise((resolve) => {
        let got = 0;
        const on = (d) => {
          got += d.length;
          if (got >= 10) { c.sock.removeListener('data', on); resolve(); }
        };
        c.sock.on('data', on);
        c.sock.write(msg);
      });
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }));
  for (const c of conns) c.sock.destroy();
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
  return { p50: q(0.5), p99: q(0.99) };
}

async function hold(ms) {
  const conns = [];
  for (let i = 0; i < job.sessions; i += 1) conns.push(await open());
  for (const c of conns) c.sock.write(clientFrame(Buffer.from('E')));
  await new Promise((r) => setTimeout(r, ms));
  for (const c of conns) c.sock.destroy();
}

(async () => {
  const out = { errors: 0 };
  try {
    if (job.hold_ms) await hold(job.hold_ms);
    if (job.seconds) out.mib_s = await flood(job.seconds);
    if (job.rounds) {
      const e = await echo(job.rounds);
      out.p50_ms = e.p50;
      out.p99_ms = e.p99;
    }
  } catch (err) {
    out.errors = 1;
    out.error = String(err.message).slice(0, 80);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
