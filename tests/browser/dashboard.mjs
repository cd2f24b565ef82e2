// A user's visit to the dashboard, in Debian's Chromium, driven by tests/tests/dashboard.rs.
//
// Environment: DASHBOARD_URL (the address `licet-node ui` printed), SHARE_LINK (a release
// another node seeds), OUTPUT_DIR (where to download it), SCREENSHOT_DIR, CHROMIUM (the
// browser's path). Talks to the test on stdout and stdin, one line each way:
//   prints "complete" once the page shows the download at 100 %, then waits for "takedown"
//   (the publisher revoked the release), and prints "done" at the end.
// Any failed expectation throws: the process exits non-zero with the reason on stderr.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const { DASHBOARD_URL, SHARE_LINK, OUTPUT_DIR, SCREENSHOT_DIR, CHROMIUM } = process.env;
// Every wait is bounded; the test gives the whole run its own limit too.
const WAIT_MS = 120_000;

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expectLine(wanted) {
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`no "${wanted}" from the test`)), WAIT_MS));
  const { value } = await Promise.race([lines.next(), timeout]);
  if (value !== wanted) throw new Error(`expected "${wanted}" from the test, got ${JSON.stringify(value)}`);
}

function check(condition, what) {
  if (!condition) throw new Error(what);
}

const url = new URL(DASHBOARD_URL);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // A name that resolves to 127.0.0.1, as a DNS-rebinding attacker's own name would.
  args: ['--host-resolver-rules=MAP rebind.test 127.0.0.1'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });

  // Overview: the node's identity, live.
  await page.goto(DASHBOARD_URL);
  await page.locator('#overview-facts .fact', { hasText: 'Peer id' }).waitFor();
  check(!page.url().includes('token='), `the token stayed in the address bar: ${page.url()}`);
  await page.locator('#updated', { hasText: 'updated' }).waitFor();
  await page.screenshot({ path: `${SCREENSHOT_DIR}/overview.png` });

  // Add by link.
  await page.getByRole('button', { name: 'Add' }).click();
  await page.getByLabel('Share link').fill(SHARE_LINK);
  await page.getByLabel("Folder on the node's machine (absolute)").fill(OUTPUT_DIR);
  await page.getByRole('button', { name: 'Download', exact: true }).click();
  await page.locator('#add-result.ok', { hasText: 'Downloading' }).waitFor();

  // Watch it reach 100 %.
  await page.getByRole('button', { name: 'Content' }).click();
  const id = SHARE_LINK.replace(/^licet:/, '').replace(/\?.*$/, '');
  const item = page.locator(`article[data-id="${id}"]`);
  await item.locator('.percent', { hasText: /^100%$/ }).waitFor();
  await item.locator('.state', { hasText: /^complete$/ }).waitFor();
  await page.screenshot({ path: `${SCREENSHOT_DIR}/complete.png` });
  // The overview counted the bytes, and its graph drew the download.
  await page.getByRole('button', { name: 'Overview' }).click();
  await page.locator('.fact', { hasText: 'Received in total' }).locator('.value', { hasText: /^3\.\d MiB$/ }).waitFor();
  await page.screenshot({ path: `${SCREENSHOT_DIR}/overview-after-download.png` });
  await page.getByRole('button', { name: 'Content' }).click();
  console.log('complete');

  // The publisher takes it down: the page turns it to refused, with the reason.
  await expectLine('takedown');
  await item.locator('.state', { hasText: /^refused$/ }).waitFor();
  const refusal = await item.locator('.refusal').textContent();
  check(refusal.includes('Revoked'), `the refusal does not say why: ${refusal}`);
  await page.screenshot({ path: `${SCREENSHOT_DIR}/refused.png` });
  // The log page shows the daemon's own lines, among them the download's end.
  await page.getByRole('button', { name: 'Log', exact: true }).click();
  await page.locator('#log-lines tr', { hasText: 'download complete' }).first().waitFor();
  await page.screenshot({ path: `${SCREENSHOT_DIR}/log.png` });
  await page.getByRole('button', { name: 'Content' }).click();

  // The pages ran under their CSP without a violation or an error.
  check(problems.length === 0, `the page logged errors: ${problems.join(' | ')}`);

  // A page under another name that resolves to the daemon gets nothing.
  const rebound = await browser.newPage();
  const response = await rebound.goto(`http://rebind.test:${url.port}/ui/`);
  check(response.status() === 403, `a page under another name got HTTP ${response.status()}`);
  const body = await response.text();
  check(body.includes('is not this daemon') && body.includes('DNS rebinding'), `the refusal does not say why: ${body}`);
  await rebound.screenshot({ path: `${SCREENSHOT_DIR}/rebind-refused.png` });
  console.log('done');
} finally {
  await browser.close();
}
