"""GStreamer ``webrtcbin`` publishing (WHIP) or playing (WHEP): ``MODE URL TOKEN SECONDS``.

Run by Debian's ``/usr/bin/python3`` (``python3-gi``), not the project's virtualenv. No WHIP
element is packaged for GStreamer 1.22, so this script does what one does: gathers, POSTs
the offer webrtcbin wrote (``bundle-policy=max-bundle``: every section after the first has
port 0 and ``a=bundle-only``), and sets the answer. It prints one JSON object a line: the
events ``version``, ``offer`` (its SDP), ``answered``, ``connected``, ``error``, and while
playing ``frames`` (decoded video frames, audio buffers, the video size) every 0.25 s.
MODE is one of ``PIPELINES``. It stops after SECONDS or on SIGTERM, DELETEs its session
resource, and exits.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO_CAPS = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"
PCMU_CAPS = "application/x-rtp,media=audio,encoding-name=PCMU,payload=0,clock-rate=8000"
VIDEO_SOURCE = (
    "webrtcbin name=webrtc bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! videoconvert ! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 "
    f"! {VIDEO_CAPS} ! webrtc. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample "
)
PIPELINES = {
    "publish": f"{VIDEO_SOURCE} ! opusenc ! rtpopuspay pt=111 ! {AUDIO_CAPS} ! webrtc.",
    # audio in a codec the relay does not forward: its bundle-only section is rejected
    "publish-pcmu": f"{VIDEO_SOURCE} ! mulawenc ! rtppcmupay pt=0 ! {PCMU_CAPS} ! webrtc.",
    "play": "webrtcbin name=webrtc bundle-policy=max-bundle",
}
PIPELINES["publish-dtls-server"] = PIPELINES["publish"]


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Client:
    def __init__(self, mode: str, url: str, token: str, seconds: float) -> None:
        self.mode, self.url, self.token = mode, url, token
        self.loop = GLib.MainLoop()
        self.pipe = Gst.Pipeline.new(mode)
        self.pipe.add(Gst.parse_bin_from_description(PIPELINES[mode], False))
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.location: str | None = None
        self.counts = {"video": 0, "audio": 0}
        self.size = (0, 0)
        self.failed = False
        # the namespace has only lo, which libnice does not gather on by itself
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        if mode == "play":
            for caps in (VIDEO_CAPS, AUDIO_CAPS):
                self.webrtc.emit(
                    "add-transceiver",
                    GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                    Gst.Caps.from_string(caps),
                )
            self.webrtc.connect("pad-added", self.on_pad)
        else:
            for transceiver in self.transceivers():
                transceiver.set_property(
                    "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY
                )
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        GLib.timeout_add(int(seconds * 1000), self.stop)
        GLib.timeout_add(250, self.report)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.stop)

    def transceivers(self) -> list[GstWebRTC.WebRTCRTPTransceiver]:
        found = []
        index = 0
        while True:
            transceiver = self.webrtc.emit("get-transceiver", index)
            if transceiver is None:
                return found
            found.append(transceiver)
            index += 1

    def run(self) -> int:
        self.pipe.set_state(Gst.State.PLAYING)
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        self.webrtc.emit("create-offer", None, promise)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        self.delete_session()
        return 1 if self.failed else 0

    def on_offer(self, promise: Gst.Promise, _: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, *_: object) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and self.location is None:
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        if self.mode == "publish-dtls-server":
            # webrtcbin takes the role the answer leaves it: the relay, offered passive,
            # answers active and webrtcbin serves DTLS with its RSA certificate
            sdp = sdp.replace("a=setup:actpass", "a=setup:passive")
        emit("offer", sdp=sdp)
        request = urllib.request.Request(
            self.url,
            data=sdp.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                answer = resp.read().decode()
                self.location = urllib.parse.urljoin(self.url, resp.headers["Location"])
        except Exception as exc:
            emit("error", message=f"POST failed: {exc}")
            self.fail()
            return False
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        promise = Gst.Promise.new_with_change_func(self.on_answer_set, None)
        self.webrtc.emit("set-remote-description", description, promise)
        return False

    def on_answer_set(self, promise: Gst.Promise, _: object) -> None:
        reply = promise.get_reply()
        error = reply.get_value("error") if reply is not None and reply.has_field("error") else None
        if error is not None:
            emit("error", message=f"answer refused: {error}")
            self.fail()
            return
        emit("answered")

    def on_connection(self, *_: object) -> None:
        state = self.webrtc.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            emit("connected")
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            emit("error", message="connection failed")
            self.fail()

    def on_pad(self, _: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        media = pad.get_current_caps().get_structure(0).get_string("media")
        kind = "video" if media == "video" else "audio"
        chain = (
            "rtpvp8depay ! vp8dec ! fakesink name=sink signal-handoffs=true sync=false"
            if kind == "video"
            else "rtpopusdepay ! opusdec ! fakesink name=sink signal-handoffs=true sync=false"
        )
        bin_ = Gst.parse_bin_from_description(chain, True)
        bin_.get_by_name("sink").connect("handoff", self.on_handoff, kind)
        self.webrtc.get_parent().add(bin_)  # beside webrtcbin: a link may not cross bins
        bin_.sync_state_with_parent()
        if pad.link(bin_.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
            emit("error", message=f"cannot link the {kind} pad")
            self.fail()

    def on_handoff(self, _: Gst.Element, __: Gst.Buffer, pad: Gst.Pad, kind: str) -> None:
        self.counts[kind] += 1
        if kind == "video" and self.size == (0, 0):
            structure = pad.get_current_caps().get_structure(0)
            self.size = (structure.get_int("width")[1], structure.get_int("height")[1])

    def report(self) -> bool:
        if self.mode == "play":
            emit("frames", **self.counts, width=self.size[0], height=self.size[1])
        return True

    def on_error(self, _: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        emit("error", message=f"{error.message} ({debug})")
        self.fail()

    def fail(self) -> None:
        self.failed = True
        self.loop.quit()

    def stop(self) -> bool:
        self.loop.quit()
        return False

    def delete_session(self) -> None:
        if self.location is None:
            return
        request = urllib.request.Request(
            self.location, method="DELETE", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except Exception as exc:  # the relay may be gone already
            emit("error", message=f"DELETE failed: {exc}")


def main() -> int:
    mode, url, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    Gst.init(None)
    emit("version", gstreamer=Gst.version_string())
    return Client(mode, url, token, seconds).run()


if __name__ == "__main__":
    sys.exit(main())
