// What a live run measures, shown in the tab and kept on window.__rapLive for tests.
//
// Latency: from an audio sample being sent to the frame at its time being drawn. The server lays the speech on the
// session's timeline unchanged (an utterance is one run of samples) and sends it back beside the frames, so the
// first non-zero sample sent and the first non-zero sample returned are the same sample (its PCM16 -> float -> PCM16
// round trip keeps zeros zero and the rest non-zero). That pair maps each frame to the sample sent at its time.
// A/V offset: for each frame drawn, when the audio at its pts is heard less when it was drawn (ms; + = drawn early).

const KEEP_OFFSETS = 250; // frames: 10 s
const KEEP_SENT = 3000; // blocks sent: 60 s of 20 ms blocks, far more than any latency

export class LiveStats {
  framesShown = 0;
  lastFrame = -1;
  dropped = 0; // frame indexes skipped between frames drawn: never came, or came too late
  latencyMs = null;
  avOffsetsMs = [];
  fps = 25;
  rate = null;
  sent = []; // {first, at}: each block's first sample and when it was sent
  sentTotal = 0;
  firstSent = null;
  firstReturned = null;
  shownTimes = []; // performance.now() of the frames drawn in the last second

  ready({ fps }) {
    this.fps = fps;
  }

  audioSent(pcm, at) {
    if (this.firstSent === null) this.firstSent = firstNonZero(pcm, this.sentTotal);
    this.sent.push({ first: this.sentTotal, at });
    if (this.sent.length > KEEP_SENT) this.sent.shift();
    this.sentTotal += pcm.length;
  }

  audioReturned(index, rate, pcm) {
    this.rate = rate;
    if (this.firstReturned === null) this.firstReturned = firstNonZero(pcm, index);
  }

  frameShown(index, previous, at, audibleAt) {
    this.framesShown += 1;
    this.lastFrame = index;
    if (previous >= 0) this.dropped += index - previous - 1;
    if (audibleAt !== null) this.avOffsetsMs.push(audibleAt - at);
    if (this.avOffsetsMs.length > KEEP_OFFSETS) this.avOffsetsMs.shift();
    this.shownTimes.push(at);
    while (this.shownTimes[0] < at - 1000) this.shownTimes.shift();
    const sentAt = this.sentAt(index);
    if (sentAt !== null) this.latencyMs = at - sentAt;
  }

  get fpsShown() {
    const since = performance.now() - 1000;
    return this.shownTimes.filter((at) => at >= since).length;
  }

  // When the sample at frame `index`'s time was sent, or null: not speech sent by us, or not yet mapped.
  sentAt(index) {
    if (this.firstSent === null || this.firstReturned === null) return null;
    const sample = Math.round((index * this.rate) / this.fps) - this.firstReturned + this.firstSent;
    if (sample < this.sent[0].first || sample >= this.sentTotal) return null;
    let low = 0;
    let high = this.sent.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.sent[middle].first <= sample) low = middle;
      else high = middle - 1;
    }
    return this.sent[low].at;
  }
}

// The index of the first non-zero sample of `pcm`, counted from `start`, or null.
function firstNonZero(pcm, start) {
  const i = pcm.findIndex((v) => v !== 0);
  return i < 0 ? null : start + i;
}
