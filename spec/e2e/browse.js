'use strict';
// Opens console pages in headless Chromium for spec/e2e_spec.lua and tells
// how noVNC fared on each. Node's built-ins only: Chromium is driven over
// the DevTools protocol on a pipe (--remote-debugging-pipe: no port, no
// websocket), and a loopback HTTP server serves console.html beside this
// file and Debian's noVNC under /novnc/.
//
//   node browse.js JOB.json
//
// JOB (a file, so that no token shows in a command line):
//   { "out": DIR, "chromium": BIN (optional), "pid_file": FILE (optional),
//     "timeout_ms": N, "colour": [r, g, b],
//     "pages": [ { "name": "direct", "ws": "ws://..." }        -- console.html on it
//              | { "name": "gateway", "url": "http://..." } ] }   -- a page as it is
// Prints one JSON line: {"results": [{name, title, pixel, screenshot, ms}]}:
// the title noVNC's events left ("connected", "failed", "disconnected";
// "no console (<type>)" for a page that is not HTML, such as an error; the
// page's own title when nothing happened in time), the RGB of the desktop's
// pixel (10, 10) as the page's canvas shows it (null without a canvas), and
// the PNG saved as OUT/<name>.png. It never prints a URL: they hold tokens.

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const NOVNC = '/usr/share/novnc';
const PAGE = path.join(__dirname, 'console.html');
const OUTCOMES = ['connected', 'failed', 'disconnected'];
const CONNECT_WAIT = 15000;   // ms for noVNC to connect or fail
const PAINT_WAIT = 5000;      // ms for the desktop's colour to reach the canvas
const colour = job.colour || [42, 111, 151];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const redact = (s) => String(s).replace(/(token=|key=)[^&\s'"]*/g, '$1<redacted>');

// --- the page server ---------------------------------------------------------

const TYPES = { '.js': 'text/javascript', '.html': 'text/html', '.css': 'text/css',
  '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon', '.ttf': 'font/ttf', '.woff': 'font/woff' };

function serveFile(res, file) {
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-store' });
    res.end(data);
  });
}

const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
  if (p === '/console.html') return serveFile(res, PAGE);
  if (p.startsWith('/novnc/') && !p.split('/').includes('..')) {
    return serveFile(res, path.join(NOVNC, p.slice('/novnc/'.length)));
  }
  res.writeHead(404);
  res.end();
});

// --- Chromium -----------------------------------------------------------------

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ctvnc-e2e-chromium-'));
let chromium = null;
let stderrTail = '';

function chromiumBin() {
  if (job.chromium) return job.chromium;
  // the binary itself: /usr/bin/chromium is a wrapper that adds flags of its
  // own (extensions, GPU rasterization) from /etc/chromium.d
  return fs.existsSync('/usr/lib/chromium/chromium') ? '/usr/lib/chromium/chromium' : 'chromium';
}

function startChromium() {
  const args = [
    // required: loopback only, nothing in the background
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    `--user-data-dir=${profile}`,
    // and the same spirit: no name resolves, no extension, no reporting
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2, EXCLUDE localhost',
    '--disable-extensions', '--disable-default-apps', '--disable-domain-reliability',
    '--disable-breakpad', '--disable-client-side-phishing-detection', '--no-pings',
    '--no-default-browser-check', '--metrics-recording-only', '--mute-audio',
    '--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,'
      + 'AutofillServerCommunication,CertificateTransparencyComponentUpdater',
    '--remote-debugging-pipe', '--window-size=1280,720', '--hide-scrollbars',
    'about:blank',
  ];
  chromium = spawn(chromiumBin(), args, {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    detached: true,                       // its own process group: killed whole
  });
  if (job.pid_file) fs.writeFileSync(job.pid_file, `${chromium.pid}\n`);
  chromium.stdio[2].on('data', (d) => { stderrTail = (stderrTail + d).slice(-4000); });
  chromium.on('exit', () => {
    for (const { reject } of pending.values()) reject(new Error('chromium exited'));
    pending.clear();
  });
  let buf = '';
  chromium.stdio[4].on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const p = msg.id !== undefined && pending.get(msg.id);
      if (p) {
        pending.delete(msg.id);
        if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p.resolve(msg.result);
      }
    }
  });
}

const pending = new Map();
let nextId = 1;

function send(method, params, sessionId) {
  const id = nextId++;
  const msg = { id, method, params: params || {} };
  if (sessionId) msg.sessionId = sessionId;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    chromium.stdio[3].write(`${JSON.stringify(msg)}\0`);
  });
}

// the whole process group: its helpers (zygote, crashpad) may outlive it
function killChromium() {
  if (!chromium) return;
  try { process.kill(-chromium.pid, 'SIGKILL'); } catch (e) { /* all gone */ }
  for (const s of chromium.stdio) if (s) s.destroy();
}

function cleanup() {
  killChromium();
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  if (job.pid_file) { try { fs.unlinkSync(job.pid_file); } catch (e) { /* gone */ } }
  server.close();
}

async function stopChromium() {
  if (!chromium || chromium.exitCode !== null) return;
  const exited = new Promise((r) => chromium.once('exit', r));
  send('Browser.close').catch(() => {});
  await Promise.race([exited, sleep(3000)]);
  killChromium();
}

// --- one page -----------------------------------------------------------------

const PIXEL = `(() => {
  const c = document.querySelector('canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d').getImageData(Math.min(10, c.width - 1), Math.min(10, c.height - 1), 1, 1).data;
  return [d[0], d[1], d[2]];
})()`;

// undefined while there is nothing to ask (a navigation replacing the page)
async function evaluate(session, expression) {
  try {
    const r = await send('Runtime.evaluate', { expression, returnByValue: true }, session);
    return r.result ? r.result.value : undefined;
  } catch (e) {
    if (chromium.exitCode !== null) throw e;
    return undefined;
  }
}

async function visit(page, base) {
  const started = Date.now();
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  try {
    await send('Page.enable', {}, sessionId);
    await send('Emulation.setDeviceMetricsOverride',
      { width: 1280, height: 720, deviceScaleFactor: 1, mobile: false }, sessionId);
    const url = page.ws ? `${base}/console.html#${encodeURIComponent(page.ws)}` : page.url;
    await send('Page.navigate', { url }, sessionId);
    let title = null;
    const deadline = Date.now() + CONNECT_WAIT;
    while (Date.now() < deadline) {
      const state = await evaluate(sessionId,
        '[document.title, document.readyState, document.contentType]');
      title = state && state[0];
      if (OUTCOMES.includes(title)) break;
      // a page that is not HTML (the gateway's JSON 403) runs no console
      if (state && state[1] === 'complete' && state[2] !== 'text/html') {
        title = `no console (${state[2]})`;
        break;
      }
      await sleep(100);
    }
    let pixel = await evaluate(sessionId, PIXEL);
    if (title === 'connected') {
      const until = Date.now() + PAINT_WAIT;
      while (Date.now() < until && !(pixel && pixel.every((v, i) => v === colour[i]))) {
        await sleep(100);
        pixel = await evaluate(sessionId, PIXEL);
      }
      await sleep(200);    // let the page settle for the screenshot
    }
    const shot = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
    const file = path.join(job.out, `${page.name}.png`);
    fs.writeFileSync(file, Buffer.from(shot.data, 'base64'));
    return { name: page.name, title, pixel: pixel || null, screenshot: file,
      ms: Date.now() - started };
  } finally {
    await send('Target.closeTarget', { targetId }).catch(() => {});
  }
}

// --- main -----------------------------------------------------------------------

async function main() {
  fs.mkdirSync(job.out, { recursive: true });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  startChromium();
  await send('Browser.getVersion');
  const results = [];
  for (const page of job.pages) results.push(await visit(page, base));
  await stopChromium();
  return results;
}

const watchdog = setTimeout(() => {
  process.stderr.write('browse.js: out of time\n');
  cleanup();
  process.exit(3);
}, job.timeout_ms || 90000);

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { cleanup(); process.exit(4); });
}

main().then((results) => {
  clearTimeout(watchdog);
  cleanup();
  process.stdout.write(`${JSON.stringify({ results })}\n`, () => process.exit(0));
}, (err) => {
  clearTimeout(watchdog);
  cleanup();
  process.stderr.write(`browse.js: ${redact(err.message)}\n${redact(stderrTail)}\n`);
  process.exit(1);
});
