// Plays a live session: its audio through WebAudio and its frames on a canvas, each at its presentation time (pts).
//
// Session time t (frame n at n / fps, sample i at i / rate) plays at AudioContext time `base + t`. Audio is scheduled
// there, and every animation frame draws the frame whose pts is being heard at that moment (read from the output's
// own timestamp, so output latency is included): picture and sound follow one clock, the audio device's.
// `base` is set when the first media arrives, LEAD seconds ahead of it (the jitter buffer), and moved later, the
// audio rescheduled, whenever something arrives too late to play on time (a stall; speech that begins, whose chunk
// waits for its audio). It never moves earlier: that would cut sound out.

const LEAD = 0.15; // s of media held ahead of the clock: the server's chunk-to-chunk jitter
const SAFETY = 0.02; // s: audio scheduled closer to now than this may already be too late

export class Playout {
  // onShown(index, previousIndex, shownAtMs, audibleAtMs | null) for every frame drawn (performance.now() times).
  constructor(ctx, canvas, onShown) {
    this.ctx = ctx;
    this.canvas = canvas;
    this.painter = canvas.getContext("2d");
    this.onShown = onShown;
    this.fps = 25;
    this.base = null;
    this.sounds = []; // scheduled or playing: {buffer, index, rate, node, at}
    this.frames = new Map(); // index -> ImageBitmap, decoded and not yet drawn
    this.shown = -1;
    this.closed = false;
    this.raf = requestAnimationFrame(this.tick);
  }

  ready({ fps, width, height }) {
    this.fps = fps;
    this.canvas.width = width;
    this.canvas.height = height;
  }

  video(index, jpeg) {
    this.keepUp(index / this.fps);
    createImageBitmap(jpeg).then((bitmap) => {
      if (this.closed || index <= this.shown) return bitmap.close();
      this.frames.set(index, bitmap);
      this.dropStale(this.dueAt(performance.now())); // a hidden page gets no animation frames to do it
    });
  }

  audio(index, rate, pcm) {
    this.keepUp(index / rate);
    const buffer = this.ctx.createBuffer(1, pcm.length, rate);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    this.play({ buffer, index, rate });
  }

  close() {
    this.closed = true;
    cancelAnimationFrame(this.raf);
    for (const sound of this.sounds) this.silence(sound);
    for (const bitmap of this.frames.values()) bitmap.close();
    this.frames.clear();
  }

  // Media of session time `pts` has arrived: anchor the timeline, or move it later if `pts` is already due.
  keepUp(pts) {
    const now = this.ctx.currentTime;
    if (this.base !== null && this.base + pts >= now + SAFETY) return;
    this.base = now + LEAD - pts;
    const sounds = this.sounds;
    this.sounds = [];
    for (const sound of sounds) {
      this.silence(sound);
      this.play(sound);
    }
  }

  play(sound) {
    const node = this.ctx.createBufferSource();
    node.buffer = sound.buffer;
    node.connect(this.ctx.destination);
    const at = this.base + sound.index / sound.rate; // where its first sample belongs, maybe past
    const now = this.ctx.currentTime;
    node.start(Math.max(at, now), Math.max(0, now - at)); // late: its rest, in place
    node.onended = () => (this.sounds = this.sounds.filter((s) => s !== sound));
    Object.assign(sound, { node, at });
    this.sounds.push(sound);
  }

  silence(sound) {
    sound.node.onended = null;
    sound.node.stop();
  }

  // Each display frame: draw the newest decoded frame whose pts is due by the audio being heard now.
  tick = (ms) => {
    if (this.closed) return;
    this.raf = requestAnimationFrame(this.tick);
    if (this.base === null) return;
    const stamp = this.outputStamp();
    const pick = this.dropStale(this.dueAt(ms, stamp));
    if (pick === this.shown) return;
    const frame = this.frames.get(pick);
    this.painter.drawImage(frame, 0, 0, this.canvas.width, this.canvas.height);
    frame.close();
    this.frames.delete(pick);
    const previous = this.shown;
    this.shown = pick;
    this.onShown(pick, previous, ms, this.audibleAt(pick / this.fps, stamp));
  };

  // The frame due at performance.now() time `ms`: the one whose pts is nearest the audio heard then, not the last one
  // begun, as a picture reaches the screen about a display refresh after the animation frame that draws it.
  dueAt(ms, stamp = this.outputStamp()) {
    return Math.round((stamp.contextTime + (ms - stamp.performanceTime) / 1000 - this.base) * this.fps);
  }

  // Closes the frames older than the newest one due -> that one's index (this.shown if none is due).
  dropStale(due) {
    let pick = this.shown;
    for (const index of this.frames.keys()) if (index <= due && index > pick) pick = index;
    for (const [index, bitmap] of this.frames) {
      if (index >= pick) continue;
      bitmap.close();
      this.frames.delete(index);
    }
    return pick;
  }

  // {contextTime, performanceTime}: the AudioContext time being heard at that performance.now() time. Before the
  // output reports one, the current time less the output latency.
  outputStamp() {
    const stamp = this.ctx.getOutputTimestamp();
    if (stamp.performanceTime > 0) return stamp;
    return { contextTime: this.ctx.currentTime - (this.ctx.outputLatency ?? 0), performanceTime: performance.now() };
  }

  // When the audio scheduled at session time `pts` is heard (performance.now() ms), or null if none is scheduled there:
  // read from where that audio was actually put, not from `base`.
  audibleAt(pts, stamp) {
    for (const { index, rate, buffer, at } of this.sounds) {
      const offset = pts - index / rate;
      if (offset < 0 || offset >= buffer.duration) continue;
      return stamp.performanceTime + (at + offset - stamp.contextTime) * 1000;
    }
    return null;
  }
}
