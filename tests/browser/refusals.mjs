// Refusals in a real browser: the visit page never shows the call to someone who may not join.
//
//   HOSPITAL_NODE_DIR=<dir with node_modules/playwright-core> \
//   node tests/browser/refusals.mjs <site> <appointment id> <strangers|ended> <screenshot dir>
//
// `strangers` (the visit booked, inside its join window): another patient (Trần Thị Bình) and
// a doctor who is not the visit's (BS. Lê Văn Hùng) each sign in and open the visit: a refusal
// page, no camera check, no call, no signalling connection. `ended` (the visit fulfilled): its
// patient opens it and sees that it has ended, with nothing to join; the join door itself
// refuses them; its doctor still has the notes panel. Run by `tests/api/browser.rs`.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.HOSPITAL_NODE_DIR}/`);
const { chromium } = require('playwright-core');

const [site, room, phase, shots] = process.argv.slice(2);
const fail = (why) => { console.error(why); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection'],
});

// Signs `user` in on the way to the visit page: the page, the status it was served with, and
// the signalling connections it opened.
async function visitAs(user, password) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'vi-VN' });
  await context.grantPermissions(['camera', 'microphone'], { origin: site });
  const page = await context.newPage();
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${site}/visit/${room}`);
  if (!page.url().includes('/signin')) fail(`${user}: not sent to sign in: ${page.url()}`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  const [served] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${site}/visit/${room}` && r.request().method() === 'GET'),
    page.click('button[type=submit]'),
  ]);
  await page.waitForLoadState('load');
  return { page, status: served.status(), sockets };
}

// Nothing of the call on the page: no camera check, no join button, no video, no chat.
async function noCall(page, who) {
  for (const sel of ['#precall', '#join', '#call', 'video', '#chat']) {
    if (await page.locator(sel).count() !== 0) fail(`${who} sees ${sel}`);
  }
  await page.waitForTimeout(1000);
  const camera = await page.evaluate(() => !!(window.visit && window.visit.local));
  if (camera) fail(`${who}: the camera was opened`);
}

try {
  if (phase === 'strangers') {
    for (const [user, password, status, reason, shot] of [
      ['binh', 'binh-demo', 404, 'Không tìm thấy buổi khám này.', 'refused-another-patient.png'],
      ['bs.hung', 'hung-demo', 403, 'Bạn không phải bác sĩ hoặc bệnh nhân của buổi khám này.', 'refused-another-doctor.png'],
    ]) {
      const { page, status: got, sockets } = await visitAs(user, password);
      if (got !== status) fail(`${user}: served ${got}, not ${status}`);
      const text = (await page.textContent('#refused')) || '';
      if (!text.includes(reason)) fail(`${user}: the refusal says "${text}"`);
      await noCall(page, user);
      if (sockets.length !== 0) fail(`${user}: signalling opened: ${sockets}`);
      await page.screenshot({ path: `${shots}/${shot}`, fullPage: true });
      console.log(`${user}: ${got} "${text}"`);
    }
  } else if (phase === 'ended') {
    const { page, status, sockets } = await visitAs('an', 'an-demo');
    if (status !== 200) fail(`the patient: served ${status}`);
    const said = (await page.textContent('#status')) || '';
    if (!said.includes('Buổi khám đã kết thúc.')) fail(`the patient's page says "${said}"`);
    await noCall(page, 'the patient');
    // The door the join button would use refuses too.
    const door = await page.evaluate(async (id) => {
      const r = await fetch(`/visit/${id}/join?consent=yes`, {
        method: 'POST', headers: { 'x-csrf-token': document.body.dataset.csrf },
      });
      return { status: r.status, body: await r.json() };
    }, room);
    if (door.status !== 412 || door.body.code !== 'PC_03' || !/fulfilled/.test(door.body.message)) {
      fail(`the join door answered ${JSON.stringify(door)}`);
    }
    if (sockets.length !== 0) fail(`signalling opened: ${sockets}`);
    await page.screenshot({ path: `${shots}/visit-ended.png`, fullPage: true });
    console.log(`the patient: "${said}"; join: ${door.status} ${door.body.message}`);
    // Its doctor may still finish the notes, but not call.
    const { page: doctor, status: ds } = await visitAs('bs.mai', 'mai-demo');
    if (ds !== 200) fail(`the doctor: served ${ds}`);
    await noCall(doctor, 'the doctor');
    if (!(await doctor.isVisible('#notes-form'))) fail('the doctor has no notes panel');
  } else {
    fail(`unknown phase ${phase}`);
  }
} finally {
  await browser.close();
}
