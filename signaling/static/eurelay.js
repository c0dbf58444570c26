// eurelay.js: a dependency-free browser client for eurelay's /v1/rtc protocol (docs/PROTOCOL.md),
// plus WHIP publishing and WHEP playback helpers. ES module; no build step.
//
//   const client = new EurelayClient("ws://host:7880/v1/rtc", token);
//   client.addEventListener("track", (e) => attach(e.detail.track, e.detail.streams));
//   client.addEventListener("reconnecting", (e) => showReconnecting(e.detail.reason));
//   await client.connect();
//   await client.publish(await navigator.mediaDevices.getUserMedia({video: true, audio: true}));
//   client.sendData("hello", {topic: "chat"});

const PROTOCOL_VERSION = 1;
const RECONNECT_REASONS = ["server_shutdown"]; // a `closed` with one of these is worth rejoining
const SILENCE_PING_MS = 10000; // a quiet socket is pinged...
const PING_LOST_MS = 15000; // ...and given up on when that ping goes unanswered this long
const JOIN_TIMEOUT_MS = 10000; // for each socket's answer to its join
const RESUME_WINDOW_MS = 5000; // a dropped session is resumed for this long before joining again
const RESUME_ATTEMPT_MS = 2000; // for one resume's connect and answer

export class EurelayError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Events: "joined" (each session, the first and every reconnect), "participant_joined",
// "participant_left", "track_published", "track_unpublished", "track_muted",
// "permissions_changed", "active_speakers" ({speakers: [{sid, identity, level}]}, loudest
// first; also kept as `client.activeSpeakers`), "track" ({track, streams, trackSid}), "data"
// ({from_identity, topic, payload}), "error" (protocol errors), "resumed" (the server's
// `resumed`: {participant, others, permissions}), "reconnecting" ({reason}), "reconnected"
// ({joined}), "closed" ({reason}, once, last).
//
// Resuming: when the socket ends without a `closed` message (the network broke), the client
// first takes the session over on a new socket to its node (`resume`, for up to 5 s): same
// participant, peer connections untouched, nobody else told; "resumed" says where the room
// stands (events sent meanwhile are not replayed).
// Reconnecting: when the session cannot be resumed (the node died, or kept it less long than
// the client was away) or the server shut down, the client joins again through the URL
// it was given (placement decides again), backing off from 0.2 s to 2 s for up to
// `reconnectTimeout` seconds, with fresh peer connections, and publishes the same tracks
// again. The new session's tracks arrive as new "track" events with new MediaStreams.
export class EurelayClient extends EventTarget {
  constructor(url, token, {
    room = null, autoSubscribe = true, iceServers = [], probe = true,
    reconnect = true, reconnectTimeout = 30,
  } = {}) {
    super();
    this.url = url; // the node the session is on, after redirects
    this.entryUrl = url; // where every join starts
    this.probe = probe;
    this.rtts = {};
    this.token = token;
    this.room = room;
    this.autoSubscribe = autoSubscribe;
    this.iceServers = iceServers;
    this.reconnect = reconnect;
    this.reconnectTimeout = reconnectTimeout;
    this.joined = null;
    this.resumeToken = ""; // from `joined`, then each `resumed`
    this.activeSpeakers = []; // [{sid, identity, level}], loudest first: the last active_speakers
    this.trackSids = {}; // subscriber m-line mid -> track sid
    this.published = {}; // publisher mid -> track sid
    this._ws = null;
    this._pub = null;
    this._pendingAnswer = null;
    this._negotiation = Promise.resolve();
    this._outgoing = []; // {track, stream, name, simulcast, sid, muted, transceiver}: published again after a reconnect
    this._choices = new Map(); // "what:trackSid" -> the last subscribe/unsubscribe/set_quality
    this._closing = false; // leave() or close(): never reconnect
    this._closedReason = null; // from the server's `closed` message
    this._epoch = 0; // one per rejoin: a superseded one stops
    this._heardAt = 0;
    this._pingedAt = 0;
    this._watchdog = null;
    this._newSubscriber();
  }

  _peerConnection() {
    return new RTCPeerConnection({iceServers: this._servers(), bundlePolicy: "max-bundle"});
  }

  // The client's ICE servers and the session's own (a TURN credential minted for it).
  _servers() {
    return [...this.iceServers, ...((this.joined && this.joined.ice_servers) || [])];
  }

  // The connection the relay offers, with its two pre-negotiated data channels.
  _newSubscriber() {
    const pc = this._peerConnection();
    this._sub = pc;
    this.trackSids = {};
    this._negotiation = Promise.resolve();
    this.reliable = pc.createDataChannel("_reliable", {negotiated: true, id: 0});
    this.lossy = pc.createDataChannel("_lossy", {
      negotiated: true, id: 1, ordered: false, maxRetransmits: 0,
    });
    for (const channel of [this.reliable, this.lossy]) {
      channel.onmessage = (event) => this._emit("data", JSON.parse(event.data));
    }
    pc.ontrack = (event) => {
      const trackSid = this.trackSids[event.transceiver.mid] || event.track.id;
      this._emit("track", {track: event.track, streams: event.streams, trackSid});
    };
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  _send(message) {
    this._ws.send(JSON.stringify(message));
  }

  // Best of three GETs of each region's /v1/ping (the regions the server offers), in ms.
  async measureRtts() {
    const base = this.entryUrl.replace(/^ws/, "http").replace(/\/v1\/rtc.*$/, "");
    const {regions} = await (await fetch(`${base}/v1/regions`)).json();
    const rtts = {};
    for (const {region, ping_url: url} of regions) {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        try { await fetch(url, {cache: "no-store"}); } catch (e) { continue; }
        best = Math.min(best, performance.now() - started);
      }
      if (best < Infinity) rtts[region] = Math.round(best * 100) / 100;
    }
    return rtts;
  }

  // Join; follows the server's redirect to the node the session belongs on.
  async connect({maxRedirects = 3} = {}) {
    if (this.probe) this.rtts = await this.measureRtts().catch(() => ({}));
    const joined = await this._place(maxRedirects);
    this._started(joined);
    return joined;
  }

  async _place(maxRedirects = 3) {
    this.url = this.entryUrl;
    for (let hop = 0; hop <= maxRedirects; hop++) {
      let result;
      try {
        result = await this._joinOnce();
      } catch (e) {
        if (e.code !== "connection_closed" || this.url === this.entryUrl) throw e;
        // The node we were sent to just went away: ask the entry node again.
        await sleep(500);
        this.url = this.entryUrl;
        continue;
      }
      if (result.type !== "redirect") return result;
      this.url = result.url;
    }
    throw new EurelayError("too_many_redirects", `redirected more than ${maxRedirects} times`);
  }

  _joinOnce() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      let settled = false;
      this._ws = ws;
      setTimeout(() => {
        if (settled) return;
        settled = true;
        ws.onclose = null;
        ws.close();
        reject(new EurelayError("connection_closed", "no answer to the join"));
      }, JOIN_TIMEOUT_MS);
      ws.onopen = () => this._send({
        type: "join", version: PROTOCOL_VERSION, token: this.token,
        room: this.room, auto_subscribe: this.autoSubscribe, rtts: this.rtts,
      });
      ws.onmessage = (event) => {
        this._heardAt = performance.now();
        const message = JSON.parse(event.data);
        if (!settled) {
          if (message.type === "redirect") {
            settled = true;
            ws.onclose = null;
            ws.close();
            resolve(message);
          } else if (message.type === "joined") {
            settled = true;
            resolve(message);
          } else if (message.type === "error") {
            settled = true;
            ws.onclose = null;
            reject(new EurelayError(message.code, message.message));
          }
          return;
        }
        this._handle(message);
      };
      ws.onclose = (event) => {
        if (!settled) {
          settled = true;
          reject(new EurelayError("connection_closed", `closed (${event.code})`));
          return;
        }
        if (ws === this._ws) this._lost(event.reason);
      };
    });
  }

  // A session began (the first or a reconnect): from here on the socket is watched.
  _started(joined) {
    this.joined = joined;
    this.resumeToken = joined.resume_token || "";
    // The subscriber connection was made before the session's servers were known; it has
    // not gathered yet (the relay's offer comes after `joined`), so it can still take them.
    try {
      this._sub.setConfiguration({...this._sub.getConfiguration(), iceServers: this._servers()});
    } catch (e) { /* keeps the client's own servers */ }
    this._closedReason = null;
    this._heardAt = performance.now();
    this._watch();
    this._emit("joined", joined);
  }

  _watch() {
    clearInterval(this._watchdog);
    this._watchdog = setInterval(() => this._checkSilence(), SILENCE_PING_MS / 2);
  }

  // A network that broke silently leaves the socket open: ping it when quiet, and count it
  // lost when that ping goes unanswered (only then: a background tab's timers run late).
  _checkSilence() {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    if (this._pingedAt > this._heardAt) {
      if (now - this._pingedAt < PING_LOST_MS) return;
      ws.onclose = null;
      ws.close();
      this._lost("");
    } else if (now - this._heardAt > SILENCE_PING_MS) {
      this._pingedAt = now;
      this._send({type: "ping", timestamp: Date.now()});
    }
  }

  // The session's socket is gone: join again, or say it is closed for good.
  _lost(socketReason) {
    clearInterval(this._watchdog);
    if (this._pendingAnswer) {
      this._pendingAnswer.reject(new EurelayError("connection_closed", "the session ended"));
      this._pendingAnswer = null;
    }
    const reason = this._closedReason;
    if (!this._closing && this.reconnect && reason === null && this.resumeToken) {
      this._resumeOrRejoin();
    } else if (!this._closing && this.reconnect && (reason === null || RECONNECT_REASONS.includes(reason))) {
      this._rejoin(reason || "connection_lost");
    } else {
      this.close(); // the peer connections end with the session, or the relay keeps hearing them
      this._emit("closed", {reason: reason || socketReason || "connection_closed"});
    }
  }

  async _resumeOrRejoin() {
    const epoch = ++this._epoch;
    const deadline = performance.now() + Math.min(RESUME_WINDOW_MS, this.reconnectTimeout * 1000);
    let delay = 200;
    while (!this._closing && epoch === this._epoch) {
      try {
        await this._resumeOnce();
        return; // `resumed` is handled (and emitted) as any message
      } catch (e) {
        if (epoch !== this._epoch) return;
        if (e.code && (e.code.startsWith("token_") || e.code === "permission_denied")) {
          this.close(); // resuming or joining again will never work
          this._emit("closed", {reason: e.code});
          return;
        }
        if (e.code === "resume_failed") break; // the node does not hold it: join again
      }
      if (performance.now() + delay > deadline) break;
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
    }
    if (!this._closing && epoch === this._epoch) this._rejoin("connection_lost");
  }

  // One attempt: a new socket to the session's node, `resume` first; resolves once resumed.
  _resumeOnce() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      let settled = false;
      this._ws = ws;
      const fail = (error) => {
        if (settled) return;
        settled = true;
        ws.onclose = null;
        ws.close();
        reject(error);
      };
      setTimeout(() => fail(new EurelayError("connection_closed", "no answer to the resume")),
        RESUME_ATTEMPT_MS);
      ws.onopen = () => this._send({
        type: "resume", version: PROTOCOL_VERSION, sid: this.joined.participant.sid,
        resume_token: this.resumeToken, token: this.token,
      });
      ws.onmessage = (event) => {
        this._heardAt = performance.now();
        const message = JSON.parse(event.data);
        if (!settled) {
          if (message.type === "error") fail(new EurelayError(message.code, message.message));
          if (message.type !== "resumed") return;
          settled = true;
          this._watch();
          resolve(message);
        }
        this._handle(message);
      };
      ws.onclose = (event) => {
        if (!settled) {
          fail(new EurelayError("connection_closed", `closed (${event.code})`));
          return;
        }
        if (ws === this._ws) this._lost(event.reason);
      };
    });
  }

  async _rejoin(reason) {
    const epoch = ++this._epoch;
    this.activeSpeakers = []; // the next session says who speaks, if anyone
    this._emit("reconnecting", {reason});
    // Local tracks outlive their peer connection in a browser: they are sent again below.
    if (this._pub) this._pub.close();
    this._pub = null;
    this._sub.close();
    this._newSubscriber();
    this.published = {};
    const deadline = performance.now() + this.reconnectTimeout * 1000;
    let delay = 200;
    let finalReason = "connection_closed";
    while (!this._closing && epoch === this._epoch) {
      try {
        const joined = await this._place();
        if (this._closing || epoch !== this._epoch) return;
        this._started(joined);
        await this._republish();
        if (epoch === this._epoch && !this._closing) this._emit("reconnected", {joined});
        return;
      } catch (e) {
        if (epoch !== this._epoch) return;
        if (e.code && (e.code.startsWith("token_") || e.code === "permission_denied")) {
          finalReason = e.code; // joining again will never work
          break;
        }
      }
      if (this._closing || performance.now() + delay > deadline) break;
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
    }
    if (epoch === this._epoch) {
      this.close();
      this._emit("closed", {reason: finalReason});
    }
  }

  // After joining again: choices about tracks still in the room hold again, and what was
  // published (and is still live) is published again, muted if it was.
  async _republish() {
    const present = new Set(this.joined.others.flatMap((o) => o.tracks.map((t) => t.sid)));
    for (const [key, ask] of this._choices) {
      if (present.has(ask.track_sid)) this._send(ask);
      else this._choices.delete(key);
    }
    const outgoing = this._outgoing.filter((o) => o.track.readyState === "live");
    this._outgoing = [];
    if (!outgoing.length) return;
    try {
      await this._publishTracks(outgoing);
      for (const item of outgoing) if (item.muted) this.mute(item.sid);
    } catch (e) {
      if (!this._outgoing.length) this._outgoing = outgoing; // the next reconnect tries again
    }
  }

  _handle(message) {
    switch (message.type) {
      case "subscriber_offer":
        // Offers are answered one at a time, in order.
        this._negotiation = this._negotiation.then(() => this._answer(message)).catch(() => {});
        break;
      case "publish_answer":
        if (this._pendingAnswer) this._pendingAnswer.resolve(message);
        break;
      case "error":
        if (this._pendingAnswer) this._pendingAnswer.reject(new EurelayError(message.code, message.message));
        this._emit("error", message);
        break;
      case "closed":
        this._closedReason = message.reason; // said once the socket closes
        break;
      case "resumed":
        this.resumeToken = message.resume_token;
        this.joined = {...this.joined, participant: message.participant, others: message.others};
        this._emit(message.type, message);
        break;
      case "pong":
        break;
      case "active_speakers":
        this.activeSpeakers = message.speakers;
        this._emit(message.type, message);
        break;
      case "permissions_changed":
        if (!message.permissions.can_publish) this._dropOutgoing();
        this._emit(message.type, message);
        break;
      default:
        this._emit(message.type, message);
    }
  }

  async _answer(offer) {
    const pc = this._sub;
    Object.assign(this.trackSids, offer.tracks);
    await pc.setRemoteDescription({type: "offer", sdp: offer.sdp});
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc === this._sub) this._send({type: "subscriber_answer", sdp: pc.localDescription.sdp});
  }

  // Publish every track of a MediaStream (renegotiates when called again). With
  // {simulcast: true} video goes out as three layers (full, 1/2 and 1/4 resolution).
  async publish(stream, {names = {}, simulcast = false} = {}) {
    return this._publishTracks(stream.getTracks().map((track) => ({
      track, stream, name: names[track.kind] || track.kind, simulcast, sid: "", muted: false,
    })));
  }

  async _publishTracks(outgoing) {
    if (!this._pub) this._pub = this._peerConnection();
    const pc = this._pub;
    const transceivers = outgoing.map((o) =>
      pc.addTransceiver(o.track, transceiverInit(o.track, o.simulcast, [o.stream])));
    await pc.setLocalDescription(await pc.createOffer());
    const tracks = transceivers.map((t, i) => ({mid: t.mid, name: outgoing[i].name}));
    const answered = new Promise((resolve, reject) => { this._pendingAnswer = {resolve, reject}; });
    this._send({type: "publish_offer", sdp: pc.localDescription.sdp, tracks});
    const answer = await answered;
    this._pendingAnswer = null;
    await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    Object.assign(this.published, answer.tracks);
    transceivers.forEach((t, i) => {
      outgoing[i].sid = answer.tracks[t.mid] || "";
      outgoing[i].transceiver = t;
    });
    this._outgoing.push(...outgoing);
    return answer.tracks;
  }

  // Publishing was taken away (back in the audience): the relay has unpublished our tracks
  // already; their senders stop sending and their m-lines go inactive in the next offer,
  // and they are forgotten, so neither a later publish nor a reconnect offers them again.
  // (Stopping the transceivers instead would close the connection's transport once none is
  // left, and the relay ends a session whose transport closes.) The page stops the camera
  // and microphone themselves.
  _dropOutgoing() {
    for (const item of this._outgoing) {
      const transceiver = item.transceiver;
      if (!transceiver || transceiver.stopped) continue;
      transceiver.sender.replaceTrack(null).catch(() => {});
      transceiver.direction = "inactive";
    }
    this._outgoing = [];
    this.published = {};
  }

  sendData(payload, {topic = null, to = [], lossy = false} = {}) {
    const envelope = {payload};
    if (topic !== null) envelope.topic = topic;
    if (to.length) envelope.destination_identities = to;
    (lossy ? this.lossy : this.reliable).send(JSON.stringify(envelope));
  }

  // Sent, and said again after a reconnect while the track is still in the room.
  _ask(what, message) {
    this._choices.set(`${what}:${message.track_sid}`, message);
    this._send(message);
  }

  subscribe(trackSid) { this._ask("subscription", {type: "subscribe", track_sid: trackSid}); }
  unsubscribe(trackSid) { this._ask("subscription", {type: "unsubscribe", track_sid: trackSid}); }
  mute(trackSid, muted = true) {
    for (const item of this._outgoing) if (item.sid === trackSid) item.muted = muted;
    this._send({type: "mute", track_sid: trackSid, muted});
  }
  // Mute a published MediaStreamTrack (a microphone button): the relay stops forwarding it,
  // and the track sends silence. Returns false if the track is not published.
  muteTrack(track, muted = true) {
    const item = this._outgoing.find((o) => o.track === track && o.sid);
    if (!item) return false;
    track.enabled = !muted;
    this.mute(item.sid, muted);
    return true;
  }
  // The highest simulcast layer to receive: "low", "medium" or "high".
  setQuality(trackSid, quality) { this._ask("quality", {type: "set_quality", track_sid: trackSid, quality}); }

  leave() {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._send({type: "leave"});
    this.close();
  }

  close() {
    this._closing = true;
    clearInterval(this._watchdog);
    if (this._pub) this._pub.close();
    this._sub.close();
    if (this._ws) this._ws.close();
  }
}

// WHIP (RFC 9725): publish a MediaStream; resolves to {pc, location}.
export async function whipPublish(url, token, stream, {iceServers = [], simulcast = false} = {}) {
  const pc = new RTCPeerConnection({iceServers, bundlePolicy: "max-bundle"});
  for (const track of stream.getTracks()) pc.addTransceiver(track, transceiverInit(track, simulcast));
  return {pc, location: await exchange(pc, url, token)};
}

// WHEP: play a room (or one participant of it); resolves to {pc, stream, location}.
export async function whepPlay(url, token, {iceServers = []} = {}) {
  const pc = new RTCPeerConnection({iceServers, bundlePolicy: "max-bundle"});
  const stream = new MediaStream();
  pc.ontrack = (event) => stream.addTrack(event.track);
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  return {pc, stream, location: await exchange(pc, url, token)};
}

export async function endSession(location, token) {
  const headers = token ? {Authorization: `Bearer ${token}`} : {};
  await fetch(location, {method: "DELETE", headers});
}

// Simulcast layers, lowest first (the relay also knows the q/h/f names).
export const SIMULCAST_LAYERS = [
  {rid: "q", scaleResolutionDownBy: 4},
  {rid: "h", scaleResolutionDownBy: 2},
  {rid: "f", scaleResolutionDownBy: 1},
];

function transceiverInit(track, simulcast, streams = []) {
  const init = {direction: "sendonly", streams};
  if (simulcast && track.kind === "video") init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({...l}));
  return init;
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  const headers = {"Content-Type": "application/sdp"};
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, {method: "POST", headers, body: pc.localDescription.sdp});
  if (response.status !== 201) {
    let code = `http_${response.status}`;
    try { code = (await response.json()).code || code; } catch (e) { /* not JSON */ }
    pc.close();
    throw new EurelayError(code, `${url} answered ${response.status}`);
  }
  await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  return new URL(response.headers.get("Location"), url).toString();
}
