// The patient's payment page in a real browser (Debian's chromium, driven by playwright-core),
// on a phone-sized screen: it shows the amount, the QR and each line of the bill with the BHYT
// share and the patient's, without scrolling sideways; a bank feed's signed webhook arrives,
// and the page turns to paid without a reload within the time allowed (measured from the
// moment the webhook is posted), and shows the receipt, which stays visible when printed.
//
//   HOSPITAL_NODE_DIR=<dir with node_modules/playwright-core> \
//   node tests/browser/payment.mjs <page url> <webhook url> <casso signature> <body file> \
//     <expected.json> <screenshot dir>
//
// expected.json: {"amount": "167.320 ₫", "lines": [{"name", "total", "bhyt", "patient"}, ...],
// "paidWithinMs": 2000}. Run by `tests/api/browser.rs`, which starts the system, issues the
// bill and signs the delivery as Casso signs it.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

// playwright-core is installed outside the checkout (by .ci/run), in HOSPITAL_NODE_DIR.
const require = createRequire(`${process.env.HOSPITAL_NODE_DIR}/`);
const { chromium } = require('playwright-core');

const [pageUrl, webhookUrl, signature, bodyFile, expectedFile, shots] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, 'utf8'));
const fail = (why) => { console.error(why); process.exit(1); };
const text = async (locator) => (await locator.textContent()).trim();

// Each line as the page shows it: name, cost, the fund's share, the patient's share.
const shownLines = (page) => page.$$eval('#lines li.line', (items) => items.map((li) => ({
  name: li.querySelector('.name').textContent.trim(),
  total: li.querySelector('dd.total').textContent.trim(),
  bhyt: li.querySelector('dd.bhyt').textContent.trim(),
  patient: li.querySelector('dd.patient').textContent.trim(),
})));

// In any order: the invoice keeps its lines in the order of its charges.
const byName = (lines) => JSON.stringify([...lines].sort((a, b) => a.name.localeCompare(b.name)));
const sameLines = (shown) => byName(shown) === byName(expected.lines);

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
  const amount = await text(page.locator('#amount'));
  if (amount !== expected.amount) fail(`the amount reads "${amount}", not "${expected.amount}"`);
  const qr = await page.locator('#qr svg').boundingBox();
  if (!qr || qr.width < 100) fail('the QR is not shown at a scannable size');
  if ((await page.getAttribute('#status', 'data-status')) !== 'issued') fail('the bill is not open');

  // The lines, in Vietnamese, each inside the phone's width; nothing scrolls sideways.
  const lines = await shownLines(page);
  if (!sameLines(lines)) fail(`the lines read ${JSON.stringify(lines)}`);
  const labels = await page.$$eval('#lines li.line:first-child dt', (dts) => dts.map((d) => d.textContent));
  if (labels.join('|') !== 'Thành tiền|BHYT chi trả|Người bệnh trả') fail(`the labels read ${labels}`);
  const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (width[0] > width[1]) fail(`the page is ${width[0]} px wide on a ${width[1]} px phone`);
  for (const box of await page.locator('#lines li.line').evaluateAll(
    (items) => items.map((li) => li.getBoundingClientRect().right))) {
    if (box > width[1]) fail(`a line reaches ${box} px on a ${width[1]} px phone`);
  }
  await page.screenshot({ path: `${shots}/payment-page.png`, fullPage: true });

  // The same page in English.
  const english = await context.newPage();
  await english.goto(`${pageUrl}?lang=en`);
  const enLabels = await english.$$eval('#lines li.line:first-child dt', (dts) => dts.map((d) => d.textContent));
  if (enLabels.join('|') !== 'Cost|Paid by BHYT|Patient pays') fail(`the English labels read ${enLabels}`);
  if (!sameLines(await shownLines(english))) fail('the English page shows other lines');
  await english.close();

  // A marker that a reload would wipe out.
  await page.evaluate(() => { window.notReloaded = true; });

  // From the moment the webhook is posted to the page saying paid.
  const started = Date.now();
  const delivered = await fetch(webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-casso-signature': signature },
    body: readFileSync(bodyFile),
  });
  if (delivered.status !== 200) fail(`the webhook answered ${delivered.status}`);
  await page.waitForFunction(
    () => document.getElementById('status').dataset.status === 'balanced', null,
    { timeout: expected.paidWithinMs + 3000 });
  const took = Date.now() - started;
  if (took > expected.paidWithinMs) fail(`the page showed paid ${took} ms after the webhook, more than ${expected.paidWithinMs} ms`);
  if (!(await page.evaluate(() => window.notReloaded === true))) fail('the page reloaded');
  const status = await page.textContent('#status');
  if (!status.includes('Đã thanh toán')) fail(`the status reads "${status}"`);
  if (await page.locator('#qr').count() !== 0) fail('the QR is still offered after payment');
  if (await page.locator('#receipt').isHidden()) fail('no receipt is shown');
  const receipt = await page.textContent('#receipts');
  if (!/PT\d{10}/.test(receipt) || !receipt.includes(expected.amount)) fail(`the receipt reads "${receipt}"`);

  // Printed: the receipt and the lines are on paper, the buttons and links are not.
  await page.emulateMedia({ media: 'print' });
  if (!(await page.locator('#receipt').isVisible())) fail('the receipt is not printed');
  if (!(await page.locator('#receipts li').first().isVisible())) fail('the receipt lines are not printed');
  if (!sameLines(await shownLines(page)) || !(await page.locator('#lines').isVisible())) fail('the bill lines are not printed');
  if (await page.locator('#receipt button').isVisible()) fail('the print button is printed');
  await page.screenshot({ path: `${shots}/receipt.png`, fullPage: true });
  console.log(`paid on the page ${took} ms after the webhook was posted; receipt: ${receipt.trim()}`);
} finally {
  await browser.close();
}
