// RAP Live's wire protocol, browser side (rap_core/live_protocol.py is the server's): text messages are JSON objects;
// binary ones are a frame, b"RAPV" + uint64 BE index + JPEG, or audio, b"RAPA" + uint64 BE first sample +
// uint32 BE sample rate + PCM16 LE mono.

// The live socket at `path` (already behind ComfyUI's base path) on this page's host; `query` e.g. {watch: "latest"}.
export function socketURL(path, query = {}) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams(query).toString();
  return url.href;
}

// A WebSocket whose messages go, decoded, to handlers.text(message), handlers.video(index, jpegBlob) and
// handlers.audio(firstSample, rate, Int16Array) (PCM16 LE read in place: browsers run little-endian).
export function openLive(url, handlers) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = ({ data }) => {
    if (typeof data === "string") return handlers.text(JSON.parse(data));
    const header = new DataView(data);
    const tag = String.fromCharCode(...new Uint8Array(data, 0, 4));
    const index = Number(header.getBigUint64(4));
    if (tag === "RAPV") handlers.video(index, new Blob([new Uint8Array(data, 12)], { type: "image/jpeg" }));
    else if (tag === "RAPA") handlers.audio(index, header.getUint32(12), new Int16Array(data, 16));
  };
  return ws;
}
