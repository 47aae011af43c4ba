// One live talk from the tab: the socket to the server, the speech feeding it, the playout and the stats.
import { api } from "../../../scripts/api.js";
import { decodeFile, microphone, streamFile } from "./capture.js";
import { Playout } from "./playout.js";
import { openLive, socketURL } from "./protocol.js";
import { LiveStats } from "./stats.js";

const SOCKET = "/rap/live/ws";
const STOP_WAIT_MS = 2000; // for the server to close the socket after `stop`, freeing its session for the next run

export class LiveRun {
  // onStatus(text, isError); onEnd() once the run is over, whichever side ended it.
  constructor(canvas, onStatus, onEnd) {
    this.canvas = canvas;
    this.onStatus = onStatus;
    this.onEnd = onEnd;
    this.session = null;
    this.stopSpeech = null;
    this.stopping = false;
    this.failed = false;
    this.over = false;
  }

  // start: {portrait, preset, ckpt_name, vae_name, encoder}; file: an audio File, or null for the microphone.
  // Call from a click: the AudioContext may only play sound after a user gesture.
  async begin(start, file) {
    this.ctx = new AudioContext();
    this.stats = window.__rapLive = new LiveStats();
    this.playout = new Playout(this.ctx, this.canvas, (...shown) => this.stats.frameShown(...shown));
    const speech = file && (await decodeFile(this.ctx, file));
    this.onStatus("Loading the model…");
    this.ws = openLive(socketURL(api.fileURL(SOCKET)), {
      text: (message) => this.onText(message, speech),
      video: (index, jpeg) => this.playout.video(index, jpeg),
      audio: (index, rate, pcm) => {
        this.stats.audioReturned(index, rate, pcm);
        this.playout.audio(index, rate, pcm);
      },
    });
    const message = { type: "start", ...start, sample_rate: this.ctx.sampleRate, seed: 0 };
    this.ws.onopen = () => this.ws.send(JSON.stringify(message));
    this.ws.onclose = () => {
      if (!this.stopping && !this.failed) this.fail("The server closed the session.");
      this.finish(this.stopping ? "Stopped" : null);
    };
  }

  fail(message) {
    this.failed = true;
    this.onStatus(message, true);
  }

  async onText(message, speech) {
    if (message.type === "error") {
      this.fail(message.message);
      if (this.session === null) this.finish(); // the talk never started
    } else if (message.type === "segment_done") {
      this.onStatus(`Live: ${message.frames} frames of speech done`);
    } else if (message.type === "ready") {
      this.session = message.session;
      this.stats.ready(message);
      this.playout.ready(message);
      this.onStatus(speech ? "Live: sending the file" : "Live: listening");
      const send = (pcm) => this.sendAudio(pcm);
      try {
        this.stopSpeech = speech
          ? streamFile(speech, this.ctx.sampleRate, send, () => this.ws.send(JSON.stringify({ type: "end" })))
          : await microphone(this.ctx, send);
      } catch (error) {
        this.fail(`No microphone: ${error.message}`);
        this.finish();
      }
      if (this.stopping || this.over) this.quiet(); // stopped while the microphone was being opened
    }
  }

  sendAudio(pcm) {
    if (this.stopping || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(pcm);
    this.stats.audioSent(pcm, performance.now());
  }

  quiet() {
    this.stopSpeech?.();
    this.stopSpeech = null;
  }

  // What was said so far is an utterance (`end`), then the session is over (`stop`); the run ends when the server
  // has closed the socket, so that a new run can start at once.
  stop() {
    if (this.ws?.readyState !== WebSocket.OPEN) return this.finish("Stopped");
    this.quiet();
    this.stopping = true;
    this.ws.send(JSON.stringify({ type: "end" }));
    this.ws.send(JSON.stringify({ type: "stop" }));
    this.onStatus("Stopping…");
    setTimeout(() => this.finish("Stopped"), STOP_WAIT_MS);
  }

  // Ends the run (once), saying `status` if given.
  finish(status = null) {
    if (this.over) return;
    this.over = true;
    if (status) this.onStatus(status);
    this.quiet();
    this.ws?.close();
    this.playout?.close();
    this.ctx?.close();
    this.onEnd();
  }
}
