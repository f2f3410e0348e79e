'use strict';
// Opens console pages in Debian's headless Chromium, driven by
// puppeteer-core (pinned in package.json beside this file), for
// spec/e2e_spec.lua, and tells how each fared. A loopback HTTP server serves
// console.html beside this file and Debian's noVNC under /novnc/.
//
//   node browse.js JOB.json
//
// JOB (a file, so that no token shows in a command line):
//   { "out": DIR, "chromium": BIN (default /usr/bin/chromium), "pid_file": FILE,
//     "timeout_ms": N, "colour": [r, g, b],
//     "pages": [ { "name": "direct", "ws": "ws://..." }          -- console.html on it
//              | { "name": "novnc", "path": "/novnc/vnc.html?.." } -- on this server
//              | { "name": "gateway", "url": "http://...",      -- a page as it is
//                  "cad": true,                                  -- click Ctrl-Alt-Del
//                  "reconnect": true,                            -- Disconnect, Connect
//                  "type": "text", "at": [x, y],                 -- click the desktop at
//                                                                -- (x, y), type text, Enter
//                  "linger_ms": N,                               -- stay N ms, then look again
//                  "wait_text": "...",                           -- wait (5 s at most) for
//                                                                -- this text before the shot
//                  "headers": {..},                              -- sent with every request
//                  "rounds": N,                                  -- the console wall: wait
//                                                                -- for N refreshes
//                  "canvas": true } ] }                          -- save the canvas's own
//                                                                -- pixels as a PNG
// Prints one JSON line: {"results": [{name, title, state, status, pixel,
// screenshot, text, urls, ws_urls, cad, ms}]}: the title noVNC's events
// left ("connected", "failed", "disconnected"; for the gateway's page, the
// state its status line reports; "no console (<type>)" for a page that is
// not HTML; else the page's own title), the HTTP status of the document,
// the RGB of the desktop's pixel (10, 10) on the canvas (null without one),
// the visible text, every URL Chromium requested and every websocket it
// opened (only for the spec to check: never printed elsewhere), whether the
// Ctrl-Alt-Del keys went out on the websocket, whether noVNC's Connect
// button connected again after its Disconnect, the pixel (10, 10) again 2 s
// after typing (pixel_after), the state and text after lingering
// (lingered, lingered_text), the console wall's tiles after `rounds`
// refreshes (tiles: [{vm, href, class, hash, state, width}]), the PNG
// saved as OUT/<name>.png and, with "canvas", the canvas's framebuffer
// pixels as OUT/<name>-canvas.png (canvas: its path).

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const puppeteer = require('puppeteer-core');

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const NOVNC = '/usr/share/novnc';
const PAGE = path.join(__dirname, 'console.html');
const OUTCOMES = ['connected', 'failed', 'disconnected'];
const CONNECT_WAIT = 15000;   // ms for noVNC to connect or fail
const PAINT_WAIT = 5000;      // ms for the desktop's colour to reach the canvas
const colour = job.colour || [42, 111, 151];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const redact = (s) => String(s).replace(/(token=|key=|ticket=)[^&\s'"]*/g, '$1<redacted>');

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
let browser = null;

const ARGS = [
  // required: loopback only, nothing in the background
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  `--user-data-dir=${profile}`,
  // and the same spirit: no name resolves, no proxy, no extension, no reporting
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2, EXCLUDE localhost',
  '--no-proxy-server', '--disable-extensions', '--disable-default-apps',
  '--disable-domain-reliability', '--disable-breakpad', '--disable-client-side-phishing-detection',
  '--no-pings', '--no-default-browser-check', '--metrics-recording-only', '--mute-audio',
  '--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,'
    + 'AutofillServerCommunication,CertificateTransparencyComponentUpdater',
  '--window-size=1280,720', '--hide-scrollbars', '--remote-debugging-pipe', 'about:blank',
];

function killChromium() {
  const proc = browser && browser.process();
  if (!proc) return;
  try { process.kill(-proc.pid, 'SIGKILL'); } catch (e) { /* no group */ }
  try { proc.kill('SIGKILL'); } catch (e) { /* gone */ }
}

function cleanup() {
  killChromium();
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  if (job.pid_file) { try { fs.unlinkSync(job.pid_file); } catch (e) { /* gone */ } }
  server.close();
}

// --- one page -----------------------------------------------------------------

const PIXEL = () => {
  const c = document.querySelector('canvas');
  if (!c || !c.width || !c.height) return null;
  const d = c.getContext('2d')
    .getImageData(Math.min(10, c.width - 1), Math.min(10, c.height - 1), 1, 1).data;
  return [d[0], d[1], d[2]];
};

// Before any page script: remember what goes out on websockets, so the
// spec can tell that Ctrl-Alt-Del's keys were sent.
const RECORD_WS = () => {
  window.__ctvncSent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      let bytes = null;
      if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
      else if (ArrayBuffer.isView(data)) {
        bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      }
      if (bytes) window.__ctvncSent.push(Array.from(bytes.slice(0, 64)));
    } catch (e) { /* recording only */ }
    return send.call(this, data);
  };
};

// a key event for keysym (RFB KeyEvent 4, or QEMU's extended 255/0)
function keyWent(messages, keysym) {
  const k = [(keysym >>> 24) & 255, (keysym >>> 16) & 255, (keysym >>> 8) & 255, keysym & 255];
  return messages.some((m) => {
    for (let i = 0; i + 8 <= m.length; i += 1) {
      if ((m[i] === 4 && m.slice(i + 4, i + 8).every((v, j) => v === k[j]))
          || (m[i] === 255 && m[i + 1] === 0 && m.slice(i + 4, i + 8).every((v, j) => v === k[j]))) {
        return true;
      }
    }
    return false;
  });
}

// A click on a toolbar control as a person would; the control bar slides
// in and out, so wait until the control is visible and try again a few times.
async function press(tab, selector) {
  let last = null;
  for (let i = 0; i < 10; i += 1) {
    try {
      await tab.evaluate(() => {
        const bar = document.getElementById('noVNC_control_bar_anchor');
        if (bar) bar.classList.remove('noVNC_idle');
        const cb = document.getElementById('noVNC_control_bar');
        if (cb) cb.classList.add('noVNC_open');
      });
      await tab.waitForSelector(selector, { visible: true, timeout: 2000 });
      await tab.click(selector);
      return;
    } catch (e) {
      last = e;
      await sleep(300);
    }
  }
  throw last;
}

async function state(page) {
  try {
    // the gateway's page says its state in data-ctvnc; noVNC's own vnc.html
    // puts noVNC_connected on the root element
    return await page.evaluate(() => [document.title, document.readyState, document.contentType,
      document.documentElement.dataset.ctvnc
        || (document.documentElement.classList.contains('noVNC_connected') ? 'connected' : null)]);
  } catch (e) {
    return null;     // a navigation replacing the page
  }
}

async function visit(page, base) {
  const started = Date.now();
  const tab = await browser.newPage();
  const urls = [];
  const wsUrls = [];
  let status = null;
  try {
    await tab.setViewport({ width: 1280, height: 720 });
    await tab.evaluateOnNewDocument(RECORD_WS);
    if (page.headers) await tab.setExtraHTTPHeaders(page.headers);
    tab.on('request', (r) => urls.push(r.url()));
    tab.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.request().frame() === tab.mainFrame()) {
        status = r.status();
      }
    });
    const cdp = await tab.createCDPSession();
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketCreated', (e) => wsUrls.push(e.url));
    const url = page.ws ? `${base}/console.html#${encodeURIComponent(page.ws)}`
      : page.path ? `${base}${page.path}` : page.url;
    await tab.goto(url, { waitUntil: 'domcontentloaded', timeout: CONNECT_WAIT })
      .catch(() => {});
    let title = null;
    let s = null;
    const deadline = Date.now() + CONNECT_WAIT;
    while (Date.now() < deadline) {
      s = await state(tab);
      title = s && (s[3] || s[0]);
      if (OUTCOMES.includes(title)) break;
      // a page that is not HTML (a JSON answer) runs no console
      if (s && s[1] === 'complete' && s[2] !== 'text/html') {
        title = `no console (${s[2]})`;
        break;
      }
      // an HTML page with no noVNC in it (the gateway's error pages)
      if (s && s[1] === 'complete' && !s[3] && !page.ws && !page.path) break;
      await sleep(100);
    }
    let pixel = await tab.evaluate(PIXEL).catch(() => null);
    let cad = false;
    let reconnected = false;
    let pixelAfter = null;
    let lingered = null;
    let lingeredText = null;
    if (title === 'connected') {
      const until = Date.now() + PAINT_WAIT;
      while (Date.now() < until && !(pixel && pixel.every((v, i) => v === colour[i]))) {
        await sleep(100);
        pixel = await tab.evaluate(PIXEL).catch(() => null);
      }
      if (page.cad) {
        // noVNC's toolbar: open the extra keys, click Ctrl-Alt-Del
        await press(tab, '#noVNC_toggle_extra_keys_button');
        await press(tab, '#noVNC_send_ctrl_alt_del_button');
        const until2 = Date.now() + 3000;
        while (Date.now() < until2 && !cad) {
          const sent = await tab.evaluate(() => window.__ctvncSent || []);
          cad = keyWent(sent, 0xffe3) && keyWent(sent, 0xffe9) && keyWent(sent, 0xffff);
          if (!cad) await sleep(100);
        }
      }
      if (page.reconnect) {
        // noVNC's own buttons: disconnect, then Connect with the ticket
        // that came back with the first websocket's 101
        await press(tab, '#noVNC_disconnect_button');
        await tab.waitForFunction(() => document.documentElement.dataset.ctvnc !== 'connected',
          { timeout: 5000 });
        await press(tab, '#noVNC_connect_button');
        reconnected = await tab.waitForFunction(
          () => document.documentElement.dataset.ctvnc === 'connected', { timeout: 10000 })
          .then(() => true, () => false);
      }
      if (page.type) {
        // a click where the desktop has a terminal (pointer focus), then keys
        const box = await tab.evaluate(() => {
          const c = document.querySelector('canvas');
          const r = c.getBoundingClientRect();
          return [r.left, r.top, r.width, r.height, c.width, c.height];
        });
        const x = box[0] + ((page.at[0] + 0.5) * box[2]) / box[4];
        const y = box[1] + ((page.at[1] + 0.5) * box[3]) / box[5];
        await tab.mouse.move(x, y);
        await tab.mouse.click(x, y);
        await sleep(300);
        await tab.keyboard.press('Enter');    // a fresh line, whatever was there
        await tab.keyboard.type(page.type, { delay: 20 });
        await tab.keyboard.press('Enter');
        await sleep(2000);
        pixelAfter = await tab.evaluate(PIXEL).catch(() => null);
      }
      if (page.linger_ms) {
        await sleep(page.linger_ms);
        const s2 = await state(tab);
        lingered = s2 && (s2[3] || s2[0]);
        lingeredText = await tab.evaluate(() => (document.body ? document.body.innerText : ''))
          .catch(() => '');
      }
      await sleep(200);    // let the page settle for the screenshot
    }
    let tiles = null;
    if (page.rounds) {
      // the console wall (data-round counts its refreshes)
      await tab.waitForFunction((n) => Number(document.documentElement.dataset.round || 0) >= n,
        { timeout: CONNECT_WAIT + page.rounds * 3000 }, page.rounds).catch(() => {});
      tiles = await tab.evaluate(() => Array.from(document.querySelectorAll('.tile'), (t) => ({
        vm: t.dataset.vm, href: t.getAttribute('href'), class: t.className,
        hash: t.dataset.hash || null, state: t.querySelector('.state').textContent,
        width: t.querySelector('img').naturalWidth })));
    }
    let canvas = null;
    if (page.canvas) {
      const data = await tab.evaluate(() => {
        const c = document.querySelector('canvas');
        return c && c.width ? c.toDataURL('image/png') : null;
      }).catch(() => null);
      if (data) {
        canvas = path.join(job.out, `${page.name}-canvas.png`);
        fs.writeFileSync(canvas, Buffer.from(data.replace(/^data:image\/png;base64,/, ''), 'base64'));
      }
    }
    if (page.wait_text) {
      // text the page shows a moment later (the VM's name, asked after connecting)
      await tab.waitForFunction((t) => document.body && document.body.innerText.includes(t),
        { timeout: 5000 }, page.wait_text).catch(() => {});
    }
    const text = await tab.evaluate(() => (document.body ? document.body.innerText : ''))
      .catch(() => '');
    const file = path.join(job.out, `${page.name}.png`);
    await tab.screenshot({ path: file });
    return { name: page.name, title, status, pixel: pixel || null, screenshot: file, text,
      urls, ws_urls: wsUrls, cad, reconnected, pixel_after: pixelAfter, lingered,
      lingered_text: lingeredText, tiles, canvas, ms: Date.now() - started };
  } finally {
    await tab.close().catch(() => {});
  }
}

// --- main -----------------------------------------------------------------------

async function main() {
  fs.mkdirSync(job.out, { recursive: true });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  browser = await puppeteer.launch({
    executablePath: job.chromium || '/usr/bin/chromium',
    ignoreDefaultArgs: true, args: ARGS, pipe: true, headless: true,
    userDataDir: profile, handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
    timeout: 30000, protocolTimeout: 30000,
  });
  if (job.pid_file) fs.writeFileSync(job.pid_file, `${browser.process().pid}\n`);
  const results = [];
  for (const page of job.pages) results.push(await visit(page, base));
  await Promise.race([browser.close().catch(() => {}), sleep(3000)]);
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
  process.stderr.write(`browse.js: ${redact(err.message)}\n`);
  process.exit(1);
});
