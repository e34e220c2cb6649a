// A real video visit in a real browser: two Chromium contexts (fake camera and microphone), the
// patient and the doctor, each signed in, join the same visit through the signalling server;
// each passes the camera and microphone check; the doctor admits the patient from the waiting
// room; each side's getStats() must show
// decoded video frames and received audio; chat crosses both ways; the patient reloads the page
// and the call comes back.
//
//   HOSPITAL_NODE_DIR=<dir with node_modules/playwright-core> \
//   node tests/browser/visit.mjs <patient's site> <doctor's site> <appointment id> <screenshot dir>
//
// The two sites may be two server processes on one PostgreSQL database. Run by
// `tests/api/browser.rs`, which seeds the demo data and books the visit.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.HOSPITAL_NODE_DIR}/`);
const { chromium } = require('playwright-core');

const [patientSite, doctorSite, room, shots] = process.argv.slice(2);
const fail = (why) => { console.error(why); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection'],
});

async function signedIn(site, user, password, viewport) {
  const context = await browser.newContext({ viewport, locale: 'vi-VN' });
  await context.grantPermissions(['camera', 'microphone'], { origin: site });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[${user}] ${m.text()}`); });
  await page.goto(`${site}/visit/${room}`);
  if (!page.url().includes('/signin')) fail(`${user}: not sent to sign in: ${page.url()}`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`**/visit/${room}`), page.click('button[type=submit]')]);
  return page;
}

async function joinCall(page) {
  await page.waitForSelector('#join:not([disabled])', { timeout: 15000 });
  if (await page.locator('#consent').count() === 1) await page.check('#consent');
  await page.click('#join');
  await page.waitForSelector('#call:not([hidden])', { timeout: 15000 });
}

// Inbound video frames decoded and audio packets received, on this side's connection.
async function media(page) {
  return page.evaluate(async () => {
    const pc = window.visit && window.visit.pc;
    if (!pc) return { video: 0, audio: 0 };
    const stats = await pc.getStats();
    let video = 0; let audio = 0;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') video = Math.max(video, r.framesDecoded || 0);
      if (r.type === 'inbound-rtp' && r.kind === 'audio') audio = Math.max(audio, r.packetsReceived || 0);
    });
    return { video, audio };
  });
}

async function flowing(page, who, seconds = 30) {
  const until = Date.now() + seconds * 1000;
  let last = { video: 0, audio: 0 };
  while (Date.now() < until) {
    last = await media(page);
    if (last.video > 0 && last.audio > 0) return last;
    await page.waitForTimeout(250);
  }
  fail(`${who}: no media arrived (${JSON.stringify(last)})`);
}

try {
  const phone = { width: 390, height: 844 };
  const patient = await signedIn(patientSite, 'an', 'an-demo', phone);
  const doctor = await signedIn(doctorSite, 'bs.mai', 'mai-demo', { width: 1280, height: 900 });
  // The doctor's list of today's visits links this one.
  await doctor.goto(`${doctorSite}/visit`);
  if (await doctor.locator(`#visits a[href="/visit/${room}"]`).count() !== 1) fail('the visit is not in the list of today');
  await doctor.goto(`${doctorSite}/visit/${room}`);
  // The camera and microphone check passes before joining, on both pages: each sees its own
  // camera, and may join only then.
  for (const [page, who] of [[patient, 'patient'], [doctor, 'doctor']]) {
    try {
      await page.waitForSelector('#check:has-text("✓")', { timeout: 15000 });
    } catch {
      fail(`the ${who}'s camera check did not pass: "${await page.textContent('#status')}"`);
    }
    if (await page.locator('#join:not([disabled])').count() !== 1) fail(`the ${who} cannot join after the check`);
    const own = await page.evaluate(() => {
      const v = document.getElementById('local');
      return v.srcObject ? v.srcObject.getTracks().map((t) => t.kind).sort().join(',') : '';
    });
    if (own !== 'audio,video') fail(`the ${who}'s own camera and microphone: "${own}"`);
    await page.screenshot({ path: `${shots}/visit-${who}-check.png`, fullPage: true });
  }
  if (await doctor.locator('#summary').count() !== 1) fail('the doctor sees no patient summary');

  await joinCall(patient);
  try {
    await patient.waitForSelector('#status:has-text("phòng chờ")', { timeout: 15000 });
  } catch {
    fail(`the patient is not in the waiting room: "${await patient.textContent('#status')}"`);
  }
  await joinCall(doctor);
  await doctor.waitForSelector('#admit:not([hidden])', { timeout: 15000 });
  await doctor.click('#admit');

  const p = await flowing(patient, 'patient');
  const d = await flowing(doctor, 'doctor');
  console.log(`media: patient ${JSON.stringify(p)}, doctor ${JSON.stringify(d)}`);

  // Chat, both ways.
  await patient.fill('#text', 'Chào bác sĩ, tôi nghe rõ.');
  await patient.click('#chat button');
  await doctor.waitForSelector('#messages li:has-text("Chào bác sĩ, tôi nghe rõ.")', { timeout: 10000 });
  await doctor.fill('#text', 'Chào anh An, mời anh ngồi gần camera hơn.');
  await doctor.click('#chat button');
  await patient.waitForSelector('#messages li:has-text("mời anh ngồi gần camera hơn")', { timeout: 10000 });
  // Messages the server refuses: for another visit's room, malformed, oversized. Each is
  // answered with an error and reaches nobody.
  const refusals = await patient.evaluate(async () => {
    const ws = window.visit.ws;
    const errors = [];
    const listen = (e) => { const m = JSON.parse(e.data); if (m.type === 'error') errors.push(m.code); };
    ws.addEventListener('message', listen);
    ws.send(JSON.stringify({ type: 'chat', room: 'another-visit', data: { text: 'lạc phòng' } }));
    ws.send('{not json');
    ws.send(JSON.stringify({ type: 'chat', data: { text: 'x'.repeat(20000) } }));
    for (let i = 0; i < 50 && errors.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    ws.removeEventListener('message', listen);
    return errors;
  });
  if (refusals.join() !== 'wrong-room,malformed,too-large') fail(`refusals: ${refusals}`);
  await doctor.waitForTimeout(500);
  if (await doctor.locator('#messages li:has-text("lạc phòng")').count() !== 0) fail('a refused message arrived');
  await patient.waitForTimeout(500);
  await patient.screenshot({ path: `${shots}/visit-patient.png`, fullPage: true });
  await doctor.screenshot({ path: `${shots}/visit-doctor.png`, fullPage: true });

  // The patient's page reloads (a dropped connection): they join again, already admitted, and
  // the call and the chat come back.
  await patient.reload();
  await joinCall(patient);
  await patient.waitForSelector('#messages li:has-text("mời anh ngồi gần camera hơn")', { timeout: 10000 });
  const again = await flowing(patient, 'patient after reload');
  await flowing(doctor, 'doctor after the patient reloaded');
  console.log(`rejoined: patient ${JSON.stringify(again)}`);

  // The doctor's notes: a diagnosis outside Circular 30/2023 with a prescription is flagged
  // before saving; a listed one is saved to the encounter and signed.
  await doctor.fill('#notes-form [name=findings]', 'Huyết áp 150/95 mmHg tại nhà, không đau ngực.');
  await doctor.fill('#notes-form [name=icd10]', 'C50.9');
  await doctor.fill('#notes-form [name=medication]', 'Amlodipin 5 mg');
  await doctor.click('#save-notes');
  await doctor.waitForSelector('#flag:not([hidden])', { timeout: 10000 });
  if (!/Circular 30/.test(await doctor.textContent('#flag'))) fail('no Circular 30 flag');
  await doctor.fill('#notes-form [name=icd10]', 'I10');
  await doctor.fill('#notes-form [name=diagnosis]', 'Tăng huyết áp vô căn');
  await doctor.fill('#notes-form [name=dosage]', '1 viên/ngày, uống buổi sáng');
  await doctor.click('#save-notes');
  await doctor.waitForSelector('#notes-status:has-text("MedicationRequest/")', { timeout: 10000 });
  await doctor.screenshot({ path: `${shots}/visit-doctor-notes.png`, fullPage: true });

  // The doctor ends the visit; both pages say so.
  await doctor.click('#end');
  await patient.waitForSelector('#status:has-text("kết thúc")', { timeout: 10000 });
} finally {
  await browser.close();
}
