// The video visit in the browser: camera and microphone check, joining, the waiting room, the
// call (WebRTC, browser to browser; the practitioner makes the offer), chat, and rejoining after
// a dropped connection. The page gives its settings in <body data-*>. No build step.
'use strict';
(() => {
  const body = document.body;
  const room = body.dataset.room;
  const role = body.dataset.role; // patient | practitioner
  const csrf = body.dataset.csrf;
  const lang = body.dataset.lang === 'en' ? 'en' : 'vi';
  const T = {
    vi: {
      checking: 'Đang kiểm tra camera và micro…', ready: 'Camera và micro sẵn sàng.',
      noDevice: 'Không dùng được camera hoặc micro: ', joining: 'Đang vào phòng…',
      waiting: 'Đang ở phòng chờ: bác sĩ sẽ mời bạn vào.', patientWaiting: 'Bệnh nhân đang chờ.',
      noPatient: 'Bệnh nhân chưa vào.', inCall: 'Đang trong cuộc gọi.', connecting: 'Đang kết nối…',
      lost: 'Mất kết nối, đang vào lại…', ended: 'Buổi khám đã kết thúc.', you: 'Bạn',
      patient: 'Bệnh nhân', practitioner: 'Bác sĩ', refused: 'Không vào được: ',
    },
    en: {
      checking: 'Checking camera and microphone…', ready: 'Camera and microphone ready.',
      noDevice: 'Camera or microphone unavailable: ', joining: 'Joining…',
      waiting: 'In the waiting room: the doctor will let you in.', patientWaiting: 'The patient is waiting.',
      noPatient: 'The patient has not joined yet.', inCall: 'In the call.', connecting: 'Connecting…',
      lost: 'Connection lost, rejoining…', ended: 'The visit has ended.', you: 'You',
      patient: 'Patient', practitioner: 'Doctor', refused: 'Could not join: ',
    },
  }[lang];
  const $ = (id) => document.getElementById(id);
  const say = (text) => { $('status').textContent = text; };
  const state = { local: null, pc: null, ws: null, ice: [], admitted: false, patientHere: false,
    ended: false, chatSeen: new Set() };
  window.visit = state; // for the tests' getStats(), and for the curious

  async function check() {
    say(T.checking);
    try {
      state.local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      $('local').srcObject = state.local;
      say(T.ready);
      $('join').disabled = false;
      $('check').textContent = '✓ ' + T.ready;
    } catch (e) {
      say(T.noDevice + e.message);
    }
  }

  function addChat(from, text, id) {
    if (id !== undefined) {
      if (state.chatSeen.has(id)) return;
      state.chatSeen.add(id);
    }
    const li = document.createElement('li');
    const who = document.createElement('b');
    who.textContent = (from === role ? T.you : T[from] || from) + ': ';
    li.append(who, document.createTextNode(text));
    $('messages').append(li);
  }

  function send(type, data) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type, room, data }));
    }
  }

  function newPeer(iceServers) {
    if (state.pc) state.pc.close();
    const pc = new RTCPeerConnection({ iceServers });
    state.pc = pc;
    state.local.getTracks().forEach((t) => pc.addTrack(t, state.local));
    pc.onicecandidate = (e) => { if (e.candidate) send('ice', e.candidate.toJSON()); };
    pc.ontrack = (e) => { $('remote').srcObject = e.streams[0]; };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') say(T.inCall);
    };
    return pc;
  }

  // A candidate of an earlier connection (before a rejoin) does not fit the new one.
  async function addIce(pc, c) {
    try { await pc.addIceCandidate(c); } catch (e) { console.warn('stale candidate', e.message); }
  }

  async function offer() {
    const pc = newPeer(state.iceServers);
    say(T.connecting);
    const o = await pc.createOffer();
    await pc.setLocalDescription(o);
    send('offer', { type: o.type, sdp: o.sdp });
  }

  async function onMessage(m) {
    switch (m.type) {
      case 'welcome':
        state.admitted = m.admitted;
        state.ended = m.ended;
        state.patientHere = (m.present || []).includes('patient');
        (m.chat || []).forEach((c) => addChat(c.from, c.data.text, c.id));
        if (m.ended) { say(T.ended); return; }
        if (role === 'patient') {
          say(m.admitted ? T.connecting : T.waiting);
        } else {
          showAdmit();
          if (state.admitted && state.patientHere) await offer();
        }
        break;
      case 'presence':
        if (m.from === 'patient' && role === 'practitioner') {
          state.patientHere = m.data.state === 'joined';
          showAdmit();
          if (state.patientHere && state.admitted) await offer();
        }
        break;
      case 'admit':
        state.admitted = true;
        say(T.connecting);
        break;
      case 'offer': {
        const pc = newPeer(state.iceServers);
        await pc.setRemoteDescription(m.data);
        const a = await pc.createAnswer();
        await pc.setLocalDescription(a);
        send('answer', { type: a.type, sdp: a.sdp });
        for (const c of state.ice.splice(0)) await addIce(pc, c);
        break;
      }
      case 'answer':
        if (state.pc) {
          await state.pc.setRemoteDescription(m.data);
          for (const c of state.ice.splice(0)) await addIce(state.pc, c);
        }
        break;
      case 'ice':
        if (state.pc && state.pc.remoteDescription) await addIce(state.pc, m.data);
        else state.ice.push(m.data);
        break;
      case 'chat':
        addChat(m.from, m.data.text, m.id);
        break;
      case 'ended':
        state.ended = true;
        if (state.pc) state.pc.close();
        say(T.ended);
        break;
      case 'error':
        console.warn('signalling:', m.code, m.message);
        break;
      default:
        break;
    }
  }

  function showAdmit() {
    if (role !== 'practitioner') return;
    const b = $('admit');
    b.hidden = !state.patientHere || state.admitted;
    if (!state.admitted) say(state.patientHere ? T.patientWaiting : T.noPatient);
  }

  async function join() {
    $('join').disabled = true;
    say(T.joining);
    const agreed = $('consent') && $('consent').checked ? '?consent=yes' : '';
    const r = await fetch(`/visit/${room}/join${agreed}`, { method: 'POST', headers: { 'x-csrf-token': csrf } });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      say(T.refused + (j.message || r.status));
      $('join').disabled = false;
      return;
    }
    state.iceServers = j.iceServers;
    $('precall').hidden = true;
    $('call').hidden = false;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/visit/${room}/ws?token=${encodeURIComponent(j.token)}`);
    state.ws = ws;
    ws.onmessage = (e) => { onMessage(JSON.parse(e.data)).catch((err) => console.warn(err)); };
    ws.onclose = () => {
      if (state.ended || state.leaving) return;
      say(T.lost);
      setTimeout(join, 1000);
    };
  }

  // A visit that is over has no call on its page: only the doctor's notes.
  const callable = $('join') !== null;
  if (callable) {
    $('join').addEventListener('click', join);
    $('admit').addEventListener('click', () => {
      state.admitted = true;
      send('admit', {});
      showAdmit();
      offer();
    });
    $('chat').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = $('text').value.trim();
      if (!text) return;
      send('chat', { text });
      addChat(role, text);
      $('text').value = '';
    });
  }
  const end = $('end');
  if (end) {
    end.addEventListener('click', async () => {
      const r = await fetch(`/visit/${room}/end`, { method: 'POST', headers: { 'x-csrf-token': csrf } });
      if (r.ok) { state.ended = true; if (state.pc) state.pc.close(); say(T.ended); }
    });
  }
  const notes = $('notes-form');
  if (notes) {
    notes.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(notes);
      const body = {};
      for (const k of ['findings', 'icd10', 'diagnosis', 'medication', 'dosage']) body[k] = f.get(k) || null;
      body.acknowledge = f.get('acknowledge') === 'on';
      const r = await fetch(`/visit/${room}/notes`, {
        method: 'POST', headers: { 'x-csrf-token': csrf, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const j = await r.json().catch(() => ({}));
      if (r.ok) {
        $('flag').hidden = true; $('ack-row').hidden = true;
        $('notes-status').textContent = (lang === 'en' ? 'Saved and signed: ' : 'Đã lưu và ký: ') + j.saved.join(', ');
        notes.reset();
      } else {
        $('flag').textContent = j.message || r.status;
        $('flag').hidden = false;
        if (/Circular 30/.test(j.message || '')) $('ack-row').hidden = false;
        $('notes-status').textContent = '';
      }
    });
  }
  window.addEventListener('beforeunload', () => { state.leaving = true; });
  if (callable) check();
})();
