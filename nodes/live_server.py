"""RAP Live on ComfyUI's own server (docs/LIVE.md): `GET /rap/live/ws`, a WebSocket that animates the
portrait as a client streams speech (rap_core.live_protocol), and `GET /rap/live/view`, a receive-only
output page (for OBS) that watches a session.

A session loads its networks through the pack's loaders, so ComfyUI's model manager places them
beside queued prompts, and renders in its own thread (rap_core.live.LiveTalk, kept at the clock's
pace). What it sends waits in a bounded queue per client: a slow client loses stale video frames,
never audio or messages. Sessions, message size and session length are capped; the Origin check
runs in the handler (ComfyUI's own checks do not cover WebSocket handshakes).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import threading
import time
from pathlib import Path

import folder_paths
from aiohttp import WSMsgType, web

from ..rap_core.config import preset_names
from ..rap_core.errors import RAPInputError
from ..rap_core.live import LiveAudio, LiveTalk, LiveVideo, SegmentDone
from ..rap_core.live_protocol import (
    Start,
    audio_message,
    parse_start,
    parse_text,
    pcm16_samples,
    video_message,
)
from ..rap_core.media.container import read_image
from ..rap_core.pipeline import RAPPipeline
from .loaders import RAPAudioEncoderLoader, RAPModelLoader, RAPVAELoader
from .networks import load

WS_ROUTE, VIEW_ROUTE = "/rap/live/ws", "/rap/live/view"
VIEW_PAGE = Path(__file__).with_name("live_view.html")
MAX_MESSAGE = 1 << 20  # bytes: 10 s of 48 kHz PCM16 in one message is far more than a client needs
VIDEO_BACKLOG = 50  # frames (2 s) a client may fall behind before the oldest are dropped
MAX_WATCHERS = 8  # output pages per session


def _setting(name: str, default: str) -> str:
    return os.environ.get(f"RAP_LIVE_{name}", default)


MAX_SESSIONS = int(_setting("SESSIONS", "1"))  # one talk per GPU by default
MAX_SECONDS = float(_setting("MAX_SECONDS", "3600"))
ALLOWED_ORIGINS = {origin.strip() for origin in _setting("ORIGINS", "").split(",") if origin.strip()}

_sessions: dict[str, Session] = {}
_ids = itertools.count(1)


def register(routes: web.RouteTableDef) -> None:
    """Add the live routes to ComfyUI's route table (mounted by the server after the packs load)."""
    routes.get(WS_ROUTE)(live_socket)
    routes.get(VIEW_ROUTE)(view_page)


def origin_allowed(request: web.Request) -> bool:
    """No Origin (a non-browser client), the page's own host, or one of RAP_LIVE_ORIGINS."""
    origin = request.headers.get("Origin")
    if origin is None or origin in ALLOWED_ORIGINS:
        return True
    return origin.split("://", 1)[-1] == request.host


async def view_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(VIEW_PAGE, headers={"Cache-Control": "no-store"})


async def live_socket(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        return web.Response(status=403, text="RAP Live: cross-origin connections are refused; see docs/LIVE.md.")
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    watch = request.query.get("watch")
    if watch is not None:
        await _watch(ws, watch)
        return ws
    if len(_sessions) >= MAX_SESSIONS:
        await _refuse(
            ws,
            f"{len(_sessions)} live session(s) already run, the most this server allows "
            "(RAP_LIVE_SESSIONS); stop one first.",
        )
        return ws
    session = Session(ws)
    _sessions[session.id] = session
    try:
        await session.serve()
    finally:
        session.close()
        del _sessions[session.id]
        for watcher in list(session.watchers):  # their pages reconnect to the next session
            await watcher.ws.close()
    return ws


async def _refuse(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_json({"type": "error", "message": message})
    await ws.close()


async def _watch(ws: web.WebSocketResponse, watch: str) -> None:
    """A receive-only copy of a session's `ready`, video and audio, until either side goes."""
    session = _sessions.get(watch) if watch != "latest" else next(reversed(_sessions.values()), None)
    if session is None or session.ready is None:
        await _refuse(ws, f"No started live session '{watch}' to watch; start one in the RAP Live tab.")
        return
    if len(session.watchers) >= MAX_WATCHERS:
        await _refuse(ws, f"Session '{session.id}' already has {MAX_WATCHERS} output pages.")
        return
    outbox = Outbox(ws)
    outbox.put_text(session.ready)
    session.watchers.append(outbox)
    sender = asyncio.create_task(outbox.send_all())
    try:
        async for _ in ws:  # a watcher sends nothing; this waits for it to go
            pass
    finally:
        session.watchers.remove(outbox)
        sender.cancel()


class Outbox:
    """What one client is sent, in order; past VIDEO_BACKLOG frames waiting, the oldest frame is dropped."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws, self.queue, self.frames, self.dropped = ws, collections.deque(), 0, 0
        self.ready = asyncio.Event()

    def put_text(self, message: dict) -> None:
        self._put(("text", message))

    def put_audio(self, data: bytes) -> None:
        self._put(("bytes", data))

    def put_video(self, data: bytes) -> None:
        if self.frames >= VIDEO_BACKLOG:
            oldest = next(i for i, (kind, _) in enumerate(self.queue) if kind == "video")
            del self.queue[oldest]
            self.frames, self.dropped = self.frames - 1, self.dropped + 1
        self.frames += 1
        self._put(("video", data))

    def _put(self, item) -> None:
        self.queue.append(item)
        self.ready.set()

    async def send_all(self) -> None:
        """Send what is queued as it comes, until cancelled or the socket closes."""
        try:
            while not self.ws.closed:
                await self.ready.wait()
                self.ready.clear()
                while self.queue and not self.ws.closed:
                    kind, payload = self.queue.popleft()
                    if kind == "video":
                        self.frames -= 1
                    if kind == "text":
                        await self.ws.send_json(payload)
                    else:
                        await self.ws.send_bytes(payload)
        except ConnectionError:  # the client went mid-send: its handler ends the session
            pass


class Session:
    """One client's live talk: its messages in, its frames and audio out."""

    def __init__(self, ws: web.WebSocketResponse):
        self.id, self.ws = str(next(_ids)), ws
        self.outbox, self.watchers = Outbox(ws), []
        self.loop = asyncio.get_running_loop()
        self.talk: LiveTalk | None = None
        self.networks = ()
        self.ready: dict | None = None
        self.closed = threading.Event()

    async def serve(self) -> None:
        sender = asyncio.create_task(self.outbox.send_all())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.ERROR:  # a message over MAX_MESSAGE: aiohttp closes with 1009
                    break
                try:
                    if message.type == WSMsgType.TEXT:
                        await self._on_text(message.data)
                    elif message.type == WSMsgType.BINARY:
                        self._on_audio(message.data)
                except RAPInputError as error:
                    self.outbox.put_text({"type": "error", "message": str(error)})
                if self.closed.is_set():
                    break
        finally:
            sender.cancel()

    async def _on_text(self, text: str) -> None:
        message = parse_text(text)
        kind = message["type"]
        if kind == "start":
            if self.talk is not None:
                raise RAPInputError("This session has started already; open another connection for another talk.")
            await self._start(parse_start(message, preset_names()))
            return
        if self.talk is None:
            raise RAPInputError(f'Send "start" before "{kind}".')
        if kind == "end":
            self.talk.end()
        elif kind == "clear":
            self.talk.clear()
        else:  # stop
            self.close()
            await self.ws.close()

    def _on_audio(self, data: bytes) -> None:
        if self.talk is None:
            raise RAPInputError('Send "start" (a JSON text message) before any audio.')
        self.talk.push(pcm16_samples(data))

    async def _start(self, start: Start) -> None:
        path = Path(folder_paths.get_input_directory()) / start.portrait
        if not path.is_file():
            raise RAPInputError(f"No portrait '{start.portrait}' in ComfyUI's input folder; upload it first.")
        pipe = await asyncio.to_thread(self._networks, start)
        self.talk = await asyncio.to_thread(
            LiveTalk, pipe, read_image(path), start.sample_rate, start.seed, start.framing
        )
        config = pipe.config
        self.ready = {
            "type": "ready",
            "fps": config.fps,
            "width": config.width,
            "height": config.height,
            "session": self.id,
        }
        self.outbox.put_text(self.ready)
        threading.Thread(target=self._render, name=f"rap-live-{self.id}", daemon=True).start()

    def _networks(self, start: Start) -> RAPPipeline:
        """The preset's networks (built-in, or the start message's files) through the pack's loaders."""
        builtin = "built-in"
        files = {"ckpt_name": builtin, "vae_name": builtin, "encoder": builtin} | start.files
        model = RAPModelLoader.execute(files["ckpt_name"], start.preset, "auto", "sdpa", False).result[0]
        vae = RAPVAELoader.execute(files["vae_name"], start.preset, "auto", False).result[0]
        encoder = RAPAudioEncoderLoader.execute(files["encoder"], start.preset, False).result[0]
        self.networks = (model, vae, encoder)
        load(*self.networks)
        return RAPPipeline(model.config, model.model, vae.model, encoder.model, model.device, model.dtype)

    def _render(self) -> None:
        """The session's renderer: chunks as their audio is in, silence on the clock, until closed."""
        began = time.monotonic()
        try:
            while not self.closed.is_set():
                now = time.monotonic() - began
                if now > MAX_SECONDS:
                    self._post(
                        Outbox.put_text,
                        {
                            "type": "error",
                            "message": f"The session reached its "
                            f"{MAX_SECONDS:g} s limit (RAP_LIVE_MAX_SECONDS); start a new one.",
                        },
                    )
                    self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.ws.close()))
                    return
                items = self.talk.poll(now=now)
                if not items:
                    self.closed.wait(0.005)
                    continue
                for item in items:
                    self._send(item)
                load(*self.networks)  # back in place if ComfyUI moved them for a queued prompt meanwhile
        except Exception as error:  # a render failure ends this session, not the server
            self._post(Outbox.put_text, {"type": "error", "message": f"Rendering failed: {error}"})
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.ws.close()))

    def _send(self, item) -> None:
        if isinstance(item, LiveVideo):
            for offset, frame in enumerate(item.frames):
                self._post(Outbox.put_video, video_message(item.index + offset, frame))
        elif isinstance(item, LiveAudio):
            self._post(Outbox.put_audio, audio_message(item.index, item.sample_rate, item.samples))
        elif isinstance(item, SegmentDone):
            self._post(Outbox.put_text, {"type": "segment_done", "frames": item.frames, "first": item.first})

    def _post(self, put, payload) -> None:
        """Queue `payload` for the client and its watchers, from the render thread."""

        def deliver() -> None:
            for outbox in (self.outbox, *self.watchers):
                if put is not Outbox.put_text or outbox is self.outbox:
                    put(outbox, payload)

        self.loop.call_soon_threadsafe(deliver)

    def close(self) -> None:
        self.closed.set()
        if self.talk is not None:
            self.talk.stop()
