// eurelay.js: a dependency-free browser client for eurelay's /v1/rtc protocol (docs/PROTOCOL.md),
// plus WHIP publishing and WHEP playback helpers. ES module; no build step.
//
//   const client = new EurelayClient("ws://host:7880/v1/rtc", token);
//   client.addEventListener("track", (e) => attach(e.detail.track, e.detail.streams));
//   await client.connect();
//   await client.publish(await navigator.mediaDevices.getUserMedia({video: true, audio: true}));
//   client.sendData("hello", {topic: "chat"});

const PROTOCOL_VERSION = 1;

export class EurelayError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

// Events: "joined", "participant_joined", "participant_left", "track_published",
// "track_unpublished", "track_muted", "track" ({track, streams, trackSid}), "data"
// ({from_identity, topic, payload}), "error" (protocol errors), "closed" ({reason}).
export class EurelayClient extends EventTarget {
  constructor(url, token, {room = null, autoSubscribe = true, iceServers = [], probe = true} = {}) {
    super();
    this.url = url;
    this.probe = probe;
    this.rtts = {};
    this.token = token;
    this.room = room;
    this.autoSubscribe = autoSubscribe;
    this.iceServers = iceServers;
    this.joined = null;
    this.trackSids = {}; // subscriber m-line mid -> track sid
    this.published = {}; // publisher mid -> track sid
    this._ws = null;
    this._pub = null;
    this._pendingAnswer = null;
    this._negotiation = Promise.resolve();
    this._sub = this._peerConnection();
    this.reliable = this._sub.createDataChannel("_reliable", {negotiated: true, id: 0});
    this.lossy = this._sub.createDataChannel("_lossy", {
      negotiated: true, id: 1, ordered: false, maxRetransmits: 0,
    });
    for (const channel of [this.reliable, this.lossy]) {
      channel.onmessage = (event) => this._emit("data", JSON.parse(event.data));
    }
    this._sub.ontrack = (event) => {
      const trackSid = this.trackSids[event.transceiver.mid] || event.track.id;
      this._emit("track", {track: event.track, streams: event.streams, trackSid});
    };
  }

  _peerConnection() {
    return new RTCPeerConnection({iceServers: this.iceServers, bundlePolicy: "max-bundle"});
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  _send(message) {
    this._ws.send(JSON.stringify(message));
  }

  // Best of three GETs of each region's /v1/ping (the regions the server offers), in ms.
  async measureRtts() {
    const base = this.url.replace(/^ws/, "http").replace(/\/v1\/rtc.*$/, "");
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
    for (let hop = 0; hop <= maxRedirects; hop++) {
      const result = await this._joinOnce();
      if (result.type !== "redirect") return result;
      this.url = result.url;
    }
    throw new EurelayError("too_many_redirects", `redirected more than ${maxRedirects} times`);
  }

  _joinOnce() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this._ws = ws;
      ws.onopen = () => this._send({
        type: "join", version: PROTOCOL_VERSION, token: this.token,
        room: this.room, auto_subscribe: this.autoSubscribe, rtts: this.rtts,
      });
      ws.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (!this.joined) {
          if (message.type === "redirect") {
            ws.onclose = null;
            ws.close();
            resolve(message);
          } else if (message.type === "joined") {
            this.joined = message;
            this._emit("joined", message);
            resolve(message);
          } else if (message.type === "error") {
            reject(new EurelayError(message.code, message.message));
          }
          return;
        }
        this._handle(message);
      };
      ws.onclose = (event) => {
        if (!this.joined) {
          reject(new EurelayError("connection_closed", `closed (${event.code})`));
          return;
        }
        this._emit("closed", {reason: event.reason || "connection_closed"});
      };
    });
  }

  _handle(message) {
    switch (message.type) {
      case "subscriber_offer":
        // Offers are answered one at a time, in order.
        this._negotiation = this._negotiation.then(() => this._answer(message));
        break;
      case "publish_answer":
        if (this._pendingAnswer) this._pendingAnswer.resolve(message);
        break;
      case "error":
        if (this._pendingAnswer) this._pendingAnswer.reject(new EurelayError(message.code, message.message));
        this._emit("error", message);
        break;
      default:
        this._emit(message.type, message);
    }
  }

  async _answer(offer) {
    Object.assign(this.trackSids, offer.tracks);
    await this._sub.setRemoteDescription({type: "offer", sdp: offer.sdp});
    await this._sub.setLocalDescription(await this._sub.createAnswer());
    this._send({type: "subscriber_answer", sdp: this._sub.localDescription.sdp});
  }

  // Publish every track of a MediaStream (renegotiates when called again). With
  // {simulcast: true} video goes out as three layers (full, 1/2 and 1/4 resolution).
  async publish(stream, {names = {}, simulcast = false} = {}) {
    if (!this._pub) this._pub = this._peerConnection();
    const transceivers = stream.getTracks().map((track) =>
      this._pub.addTransceiver(track, transceiverInit(track, simulcast, [stream])));
    await this._pub.setLocalDescription(await this._pub.createOffer());
    const tracks = transceivers.map((t) => ({mid: t.mid, name: names[t.sender.track.kind] || t.sender.track.kind}));
    const answered = new Promise((resolve, reject) => { this._pendingAnswer = {resolve, reject}; });
    this._send({type: "publish_offer", sdp: this._pub.localDescription.sdp, tracks});
    const answer = await answered;
    this._pendingAnswer = null;
    await this._pub.setRemoteDescription({type: "answer", sdp: answer.sdp});
    Object.assign(this.published, answer.tracks);
    return answer.tracks;
  }

  sendData(payload, {topic = null, to = [], lossy = false} = {}) {
    const envelope = {payload};
    if (topic !== null) envelope.topic = topic;
    if (to.length) envelope.destination_identities = to;
    (lossy ? this.lossy : this.reliable).send(JSON.stringify(envelope));
  }

  subscribe(trackSid) { this._send({type: "subscribe", track_sid: trackSid}); }
  unsubscribe(trackSid) { this._send({type: "unsubscribe", track_sid: trackSid}); }
  mute(trackSid, muted = true) { this._send({type: "mute", track_sid: trackSid, muted}); }
  // The highest simulcast layer to receive: "low", "medium" or "high".
  setQuality(trackSid, quality) { this._send({type: "set_quality", track_sid: trackSid, quality}); }

  leave() {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._send({type: "leave"});
    this.close();
  }

  close() {
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
