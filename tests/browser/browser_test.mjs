// Browser test: headless Chromium (Debian's, driven by playwright-core from
// tests/browser/package-lock.json) against `kaze echo` over wss://.
//
//   node browser_test.mjs GOOD_PORT SELF_PORT WRONG_PORT EXPIRED_PORT
//   node browser_test.mjs --untrusted GOOD_PORT
//
// The second form is the control: with a $HOME whose NSS database does not
// trust the test CA, Chromium must refuse the GOOD_PORT server.
//
// run.sh starts the servers: GOOD_PORT is `kaze echo --subprotocol chat` with
// the test CA's certificate for localhost; the others serve a self-signed
// certificate, one for another name and an expired one. The test CA must be
// trusted through the NSS database in $HOME/.pki/nssdb (run.sh makes it):
// Chromium then checks the chain and the name itself. Nothing here tells
// Chromium to ignore certificate errors.
//
// The page (page.html) is served over plain http from localhost, the same
// loopback host as the wss:// server (Chromium's Local Network Access lets such
// a page open it). Prints a line per check, then "N passed, N failed".
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const untrusted = args[0] === '--untrusted';
if (untrusted) args.shift();
const [good, self, wrong, expired] = args.map(Number);
if (!good || (!untrusted && (!self || !wrong || !expired))) {
  console.error('usage: node browser_test.mjs GOOD_PORT SELF_PORT WRONG_PORT EXPIRED_PORT\n' +
    '       node browser_test.mjs --untrusted GOOD_PORT');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const page_html = readFileSync(new URL('./page.html', import.meta.url));

let passed = 0;
let failed = 0;
function ok(name) {
  passed++;
  console.log(`ok   ${name}`);
}
function bad(name, ...seen) {
  failed++;
  console.log(`FAIL ${name}`);
  for (const s of seen) console.log(`       ${s}`);
}

const http = createServer((req, res) => {
  if (req.url === '/' || req.url === '/index.html') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(page_html);
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
const pageUrl = `http://localhost:${http.address().port}/`;
const wss = (port) => `wss://localhost:${port}/`;

const userDataDir = mkdtempSync(join(tmpdir(), 'kaze-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: 60_000,
  });
  const version = context.browser()?.version() ?? '(version unknown)';
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  console.log(`browser: Chromium ${version}, page ${pageUrl}`);

  const refused = async (name, port) => {
    try {
      const r = await page.evaluate((url) => window.kaze.refused(url), wss(port));
      if (!r.opened) ok(`Chromium refuses ${name} (${r.error})`);
      else bad(`Chromium opened a connection to a server with ${name}`);
    } catch (e) {
      bad(`Chromium and ${name}`, e.message);
    }
  };
  if (untrusted) await refused('the server when the test CA is not trusted', good);
  else await checks(page, refused);
  if (failed) for (const l of consoleLines) console.log(`       console ${l}`);
} catch (e) {
  bad('Chromium could not run the test', e.message);
} finally {
  if (context) await context.close().catch(() => {});
  http.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;

// The checks against the trusted server and the three it must refuse.
async function checks(page, refused) {
  const echoCase = async (name, fn, port, check) => {
    try {
      const r = await page.evaluate(([f, url]) => window.kaze[f](url), [fn, wss(port)]);
      const problems = [...(r.problems || []), ...check(r)];
      if (problems.length === 0) ok(`${name} (extensions '${r.extensions}', protocol '${r.protocol}')`);
      else bad(name, ...problems);
    } catch (e) {
      bad(name, e.message);
    }
  };
  const deflate = (r) => (/^permessage-deflate\b/.test(r.extensions || '') ? [] : [`ws.extensions is '${r.extensions}', want permessage-deflate`]);
  const cleanClose = (r) => (r.close && r.close.code === 1000 && r.close.wasClean ? [] : [`close: ${JSON.stringify(r.close)}`]);
  const noProtocol = (r) => (r.protocol === '' ? [] : [`no subprotocol asked, got '${r.protocol}'`]);

  await echoCase('Chromium: text messages over wss://, permessage-deflate agreed', 'text', good,
    (r) => [...deflate(r), ...noProtocol(r), ...cleanClose(r)]);
  await echoCase('Chromium: binary messages (up to 1 MiB) over wss://', 'binary', good,
    (r) => [...deflate(r), ...cleanClose(r)]);
  await echoCase('Chromium: subprotocol chat', 'subprotocol', good,
    (r) => [...(r.protocol === 'chat' ? [] : [`asked for chat, got '${r.protocol}'`]), ...cleanClose(r)]);
  await echoCase('Chromium: 500 messages in flight', 'many', good, (r) => [...deflate(r), ...cleanClose(r)]);

  for (const [name, port] of [['a self-signed certificate', self], ['a certificate for another name', wrong],
    ['an expired certificate', expired]]) {
    await refused(name, port);
  }
  // After the refusals, the trusted server still works from the same page.
  await echoCase('Chromium: text again after the refusals', 'text', good, (r) => [...deflate(r), ...cleanClose(r)]);
}
