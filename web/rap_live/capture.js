// The speech a live run sends, as PCM16 mono blocks of BLOCK_S at the AudioContext's rate (the session's
// sample_rate): the microphone, or an audio file at real-time pace. Each returns a function that stops it.

const BLOCK_S = 0.02;
const PROCESSOR = "rap-live-pcm16";

// Runs on the audio thread: downmixes to mono and posts each full block. A Blob URL, not a file: ComfyUI imports
// every .js under web/ as an extension, and this one only works inside an AudioWorklet.
const WORKLET = `
registerProcessor("${PROCESSOR}", class extends AudioWorkletProcessor {
  constructor({ processorOptions }) {
    super();
    this.size = processorOptions.size;
    this.block = new Int16Array(this.size);
    this.filled = 0;
  }
  process([channels]) {
    const length = channels.length ? channels[0].length : 0;
    for (let i = 0; i < length; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      this.block[this.filled++] = Math.round(Math.max(-1, Math.min(1, sum / channels.length)) * 32767);
      if (this.filled === this.size) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Int16Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
});`;

// The raw microphone: no echo cancelling, noise suppression or gain control, which would bend the speech.
export async function microphone(ctx, send) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
  try {
    await ctx.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
  const size = Math.round(ctx.sampleRate * BLOCK_S);
  const node = new AudioWorkletNode(ctx, PROCESSOR, { numberOfOutputs: 0, processorOptions: { size } });
  node.port.onmessage = ({ data }) => send(data);
  const source = ctx.createMediaStreamSource(stream);
  source.connect(node); // no destination needed: Chromium runs a node without outputs while it has input
  return () => {
    source.disconnect();
    node.port.onmessage = null;
    for (const track of stream.getTracks()) track.stop();
  };
}

// An audio file -> PCM16 mono at the context's rate.
export async function decodeFile(ctx, file) {
  const decoded = await ctx.decodeAudioData(await file.arrayBuffer());
  const pcm = new Int16Array(decoded.length);
  const channels = Array.from({ length: decoded.numberOfChannels }, (_, c) => decoded.getChannelData(c));
  for (let i = 0; i < pcm.length; i++) {
    let sum = 0;
    for (const channel of channels) sum += channel[i];
    pcm[i] = Math.round(Math.max(-1, Math.min(1, sum / channels.length)) * 32767);
  }
  return pcm;
}

// Sends `pcm` as a microphone would, each block once its last sample's time has come, then calls done().
export function streamFile(pcm, rate, send, done) {
  const size = Math.round(rate * BLOCK_S);
  const began = performance.now();
  let next = 0;
  const timer = setInterval(() => {
    const heard = Math.min(pcm.length, Math.floor(((performance.now() - began) / 1000) * rate));
    const end = heard === pcm.length ? heard : heard - (heard % size);
    for (; next < end; next += size) send(pcm.slice(next, Math.min(next + size, end)));
    if (next >= pcm.length) {
      clearInterval(timer);
      done();
    }
  }, BLOCK_S * 1000);
  return () => clearInterval(timer);
}
