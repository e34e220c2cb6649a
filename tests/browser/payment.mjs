// The patient's payment page in a real browser (Debian's chromium, driven by playwright-core):
// it shows the amount and the QR, a bank feed's signed webhook arrives, and the page turns to
// paid without a reload and shows the printable receipt.
//
//   HOSPITAL_NODE_DIR=<dir with node_modules/playwright-core> \
//   node tests/browser/payment.mjs <page url> <webhook url> <casso signature> <body file> <screenshot dir>
//
// Run by `tests/api/browser.rs`, which starts the system and signs the delivery as Casso signs it.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

// playwright-core is installed outside the checkout (by .ci/run), in HOSPITAL_NODE_DIR.
const require = createRequire(`${process.env.HOSPITAL_NODE_DIR}/`);
const { chromium } = require('playwright-core');

const [pageUrl, webhookUrl, signature, bodyFile, shots] = process.argv.slice(2);
const fail = (why) => { console.error(why); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'vi-VN' });
  const page = await context.newPage();
  const response = await page.goto(pageUrl);
  if (response.status() !== 200) fail(`the page answered ${response.status()}`);
  const amount = await page.textContent('#amount');
  if (!amount.includes('250.000 ₫')) fail(`the amount reads "${amount}"`);
  const qr = await page.locator('#qr svg').boundingBox();
  if (!qr || qr.width < 100) fail('the QR is not shown at a scannable size');
  if ((await page.getAttribute('#status', 'data-status')) !== 'issued') fail('the bill is not open');
  await page.screenshot({ path: `${shots}/payment-page.png`, fullPage: true });
  // A marker that a reload would wipe out.
  await page.evaluate(() => { window.notReloaded = true; });

  const delivered = await fetch(webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-casso-signature': signature },
    body: readFileSync(bodyFile),
  });
  if (delivered.status !== 200) fail(`the webhook answered ${delivered.status}`);

  const started = Date.now();
  await page.waitForFunction(
    () => document.getElementById('status').dataset.status === 'balanced', null, { timeout: 5000 });
  const took = Date.now() - started;
  if (!(await page.evaluate(() => window.notReloaded === true))) fail('the page reloaded');
  const status = await page.textContent('#status');
  if (!status.includes('Đã thanh toán')) fail(`the status reads "${status}"`);
  if (await page.locator('#qr').count() !== 0) fail('the QR is still offered after payment');
  if (await page.locator('#receipt').isHidden()) fail('no receipt is shown');
  const receipt = await page.textContent('#receipts');
  if (!/PT\d{10}/.test(receipt) || !receipt.includes('250.000 ₫')) fail(`the receipt reads "${receipt}"`);
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: `${shots}/receipt.png`, fullPage: true });
  console.log(`paid on the page ${took} ms after the webhook; receipt: ${receipt.trim()}`);
} finally {
  await browser.close();
}
