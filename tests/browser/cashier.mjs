// The cashier's page in a real browser (Debian's chromium, driven by playwright-core): the
// cashier signs in, sees the transfer that matched no bill, assigns it to the bill by its
// number, and opens the payment's printable receipt.
//
//   HOSPITAL_NODE_DIR=<dir with node_modules/playwright-core> \
//   node tests/browser/cashier.mjs <site url> <bill number> <screenshot dir>
//
// Run by `tests/api/browser.rs`, which starts the system, issues the bill and posts the
// unmatched transfer.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.HOSPITAL_NODE_DIR}/`);
const { chromium } = require('playwright-core');

const [site, bill, shots] = process.argv.slice(2);
const fail = (why) => { console.error(why); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'vi-VN' });
  const page = await context.newPage();
  // Not signed in: the page sends the browser to sign in, and back.
  await page.goto(`${site}/staff/billing`);
  if (!page.url().includes('/signin')) fail(`not sent to sign in: ${page.url()}`);
  await page.fill('input[name=username]', 'thungan');
  await page.fill('input[name=password]', 'thungan-demo');
  await Promise.all([page.waitForURL('**/staff/billing'), page.click('button[type=submit]')]);
  const row = page.locator('#unmatched tr', { hasText: 'chuyen khoan vien phi' });
  if (await row.count() !== 1) fail('the unmatched transfer is not in the queue');
  await page.screenshot({ path: `${shots}/cashier-queue.png`, fullPage: true });
  await row.locator('input[name=bill]').fill(bill);
  await Promise.all([page.waitForURL('**/staff/billing?msg=*'), row.locator('button', { hasText: 'Assign' }).click()]);
  const msg = await page.textContent('#msg');
  if (!msg.includes('Đã gán') || !msg.includes('paid')) fail(`the page says "${msg}"`);
  if (await page.locator('#unmatched tr', { hasText: 'chuyen khoan vien phi' }).count() !== 0) {
    fail('the transfer is still in the queue');
  }
  // The day's totals show the transfer, and its receipt prints.
  if (await page.locator('#receipts a').count() < 1) fail('no receipt is listed');
  await Promise.all([page.waitForURL('**/staff/billing/receipts/*'), page.locator('#receipts a').first().click()]);
  const receipt = await page.textContent('#receipt');
  if (!/PT\d{10}/.test(receipt) || !receipt.includes(bill)) fail(`the receipt reads "${receipt}"`);
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: `${shots}/cashier-receipt.png`, fullPage: true });
  console.log(`assigned by the cashier; receipt: ${receipt.replace(/\s+/g, ' ').trim()}`);
} finally {
  await browser.close();
}
