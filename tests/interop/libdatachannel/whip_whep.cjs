// libdatachannel (npm node-datachannel, prebuilt) as a WHIP publisher or a WHEP player:
//   node whip_whep.cjs publish URL TOKEN SECONDS FRAMES_JSON
//   node whip_whep.cjs play URL TOKEN SECONDS
// libdatachannel has no VP8 packetizer: publish replays VP8 RTP payloads the test encoded
// (FRAMES_JSON: {"frames": [[base64 payload, ...], ...]}, 30 fps, looped, first frame a
// keyframe), with RTP headers written here, and Opus silence every 20 ms. play counts the RTP
// packets it receives per kind and the sequence numbers missing. One JSON object a line on
// stdout: offer, answered, connected, rtp (every 0.25 s while playing), error. Stops after
// SECONDS or on SIGTERM, DELETEs its session resource and exits. LDC_LOG=Debug (or Info,
// Warning...) writes libdatachannel's own log to stderr.
"use strict";

const fs = require("fs");
const path = require("path");
const ndc = require("node-datachannel");

const [mode, url, token, secondsArg, framesPath] = process.argv.slice(2);
const VP8_PT = 96;
const OPUS_PT = 111;
const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]); // one 20 ms CELT frame of silence

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

if (process.env.LDC_LOG) {
  ndc.initLogger(process.env.LDC_LOG, (level, message) => {
    process.stderr.write(`${level} ${message}\n`);
  });
}
const pc = new ndc.PeerConnection(mode, { iceServers: [], bindAddress: "127.0.0.1" });
let location = null;
const tracks = [];
let stopping = false;
const timers = [];

function rtpHeader(payloadType, marker, seq, timestamp, ssrc) {
  const header = Buffer.alloc(12);
  header[0] = 0x80;
  header[1] = (marker ? 0x80 : 0) | payloadType;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE(timestamp >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  return header;
}

function startPublishing(video, audio, videoSsrc, audioSsrc) {
  const frames = JSON.parse(fs.readFileSync(framesPath, "utf8")).frames.map((payloads) =>
    payloads.map((p) => Buffer.from(p, "base64")),
  );
  let frame = 0;
  let videoSeq = 1000;
  let videoTs = 90000;
  timers.push(
    setInterval(() => {
      if (!video.isOpen()) return;
      const payloads = frames[frame % frames.length];
      payloads.forEach((payload, i) => {
        const last = i === payloads.length - 1;
        const header = rtpHeader(VP8_PT, last, videoSeq++, videoTs, videoSsrc);
        video.sendMessageBinary(Buffer.concat([header, payload]));
      });
      videoTs += 3000;
      frame += 1;
    }, 1000 / 30),
  );
  let audioSeq = 5000;
  let audioTs = 48000;
  timers.push(
    setInterval(() => {
      if (!audio.isOpen()) return;
      audio.sendMessageBinary(
        Buffer.concat([rtpHeader(OPUS_PT, false, audioSeq++, audioTs, audioSsrc), OPUS_SILENCE]),
      );
      audioTs += 960;
    }, 20),
  );
}

function countRtp(track, kind, counts) {
  const last = new Map(); // ssrc -> last sequence number
  track.onMessage((message) => {
    const packet = Buffer.from(message);
    if (packet.length < 12 || (packet[1] >= 192 && packet[1] <= 223)) return; // RTCP
    const seq = packet.readUInt16BE(2);
    const ssrc = packet.readUInt32BE(8);
    if (last.has(ssrc)) {
      const step = (seq - last.get(ssrc)) & 0xffff;
      if (step === 0 || step >= 0x8000) return; // a duplicate or a late one: not counted
      counts.gaps += step - 1;
    }
    last.set(ssrc, seq);
    counts[kind] += 1;
  });
}

async function postOffer() {
  const sdp = pc.localDescription().sdp;
  emit("offer", { sdp });
  try {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: sdp,
    });
    const answer = await resp.text();
    if (resp.status !== 201) throw new Error(`HTTP ${resp.status}: ${answer}`);
    location = new URL(resp.headers.get("Location"), url).toString();
    pc.setRemoteDescription(answer, "answer");
    emit("answered");
  } catch (err) {
    emit("error", { message: `POST failed: ${err}` });
    stop(1);
  }
}

async function stop(code) {
  if (stopping) return;
  stopping = true;
  timers.forEach(clearInterval);
  if (location !== null) {
    try {
      await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
    } catch (err) {
      emit("error", { message: `DELETE failed: ${err}` });
    }
  }
  pc.close();
  ndc.cleanup();
  process.exit(code);
}

function main() {
  const npmPackage = path.join(__dirname, "node_modules", "node-datachannel", "package.json");
  emit("version", {
    "node-datachannel": JSON.parse(fs.readFileSync(npmPackage, "utf8")).version,
    libdatachannel: ndc.getLibraryVersion(),
  });
  let posted = false;
  pc.onGatheringStateChange((state) => {
    if (state === "complete" && !posted) {
      posted = true;
      postOffer();
    }
  });
  pc.onStateChange((state) => {
    if (state === "connected") emit("connected");
    if (state === "failed") {
      emit("error", { message: "connection failed" });
      stop(1);
    }
  });
  if (mode === "publish") {
    const videoSsrc = 0x1000 + Math.floor(Math.random() * 0xfffff);
    const audioSsrc = videoSsrc + 1;
    const videoDesc = new ndc.Video("video", "SendOnly");
    videoDesc.addVP8Codec(VP8_PT);
    videoDesc.addSSRC(videoSsrc, "libdatachannel", "stream", "video");
    const audioDesc = new ndc.Audio("audio", "SendOnly");
    audioDesc.addOpusCodec(OPUS_PT);
    audioDesc.addSSRC(audioSsrc, "libdatachannel", "stream", "audio");
    tracks.push(pc.addTrack(videoDesc), pc.addTrack(audioDesc));
    startPublishing(tracks[0], tracks[1], videoSsrc, audioSsrc);
  } else {
    const counts = { video: 0, audio: 0, gaps: 0 };
    const videoDesc = new ndc.Video("video", "RecvOnly");
    videoDesc.addVP8Codec(VP8_PT);
    const audioDesc = new ndc.Audio("audio", "RecvOnly");
    audioDesc.addOpusCodec(OPUS_PT);
    // held here: a track whose JavaScript object is collected is removed from the session
    tracks.push(pc.addTrack(videoDesc), pc.addTrack(audioDesc));
    countRtp(tracks[0], "video", counts);
    countRtp(tracks[1], "audio", counts);
    timers.push(setInterval(() => emit("rtp", counts), 250));
  }
  pc.setLocalDescription();
  setTimeout(() => stop(0), Number(secondsArg) * 1000);
  process.on("SIGTERM", () => stop(0));
}

main();
