// The RAP Live panel: pickers filled from ComfyUI, Start / Stop, the live picture with its readouts, and the output
// page's link.
import { api } from "../../../scripts/api.js";
import { comboOptions, uploadPortrait } from "./choices.js";
import { LiveRun } from "./run.js";

const VIEW = "/rap/live/view";
const MODEL_FILES = [
  // [start message field, loader node, label]
  ["ckpt_name", "RAPModelLoader", "Model"],
  ["vae_name", "RAPVAELoader", "VAE"],
  ["encoder", "RAPAudioEncoderLoader", "Audio encoder"],
];

const STYLE = `
.rap-live { display: flex; flex-direction: column; gap: 8px; padding: 10px; font-size: 13px; }
.rap-live label { display: flex; align-items: center; gap: 8px; }
.rap-live label > span { flex: 0 0 64px; }
.rap-live [hidden] { display: none; }
.rap-live select, .rap-live input[type=file] { flex: 1; min-width: 0; }
.rap-live select, .rap-live button { background: var(--comfy-input-bg); color: var(--input-text);
  border: 1px solid var(--border-color); border-radius: 4px; padding: 3px 6px; }
.rap-live button:disabled { opacity: 0.5; }
.rap-live .row { display: flex; gap: 6px; flex-wrap: wrap; }
.rap-live canvas { width: 100%; background: #000; border-radius: 4px; aspect-ratio: 1; object-fit: contain; }
.rap-live .readouts { font-variant-numeric: tabular-nums; opacity: 0.85; }
.rap-live .error { color: var(--error-text, #f66); }
`;

// document.createElement with properties and children.
function h(tag, props = {}, ...children) {
  const element = Object.assign(document.createElement(tag), props);
  element.append(...children);
  return element;
}

function labelled(text, ...controls) {
  return h("label", {}, h("span", { textContent: text }), ...controls);
}

// Fills a <select> with `options`, keeping its choice if still offered, else `preferred`, else the first.
function fill(select, options, preferred) {
  const keep = select.value;
  select.replaceChildren(...options.map((value) => h("option", { value, textContent: value })));
  select.value = options.includes(keep) ? keep : options.includes(preferred) ? preferred : options[0] ?? "";
}

// -> {panel, refresh}: the panel's element, and a function that lists the choices again.
export function buildPanel() {
  document.head.append(h("style", { textContent: STYLE }));
  const portrait = h("select", { className: "rap-live-portrait" });
  const portraitFile = h("input", { type: "file", accept: "image/*", hidden: true });
  const upload = h("button", { textContent: "Upload", title: "Upload a portrait", className: "rap-live-upload" });
  const preset = h("select", { className: "rap-live-preset" });
  const files = Object.fromEntries(
    MODEL_FILES.map(([field]) => [field, h("select", { className: `rap-live-${field}` })]),
  );
  const source = h("select", { className: "rap-live-source" });
  source.append(h("option", { value: "microphone", textContent: "Microphone" }));
  source.append(h("option", { value: "file", textContent: "Audio file" }));
  const audioFile = h("input", { type: "file", accept: "audio/*", className: "rap-live-audio-file" });
  const audioRow = labelled("File", audioFile);
  audioRow.hidden = true;
  const start = h("button", { textContent: "Start", className: "rap-live-start" });
  const stop = h("button", { textContent: "Stop", className: "rap-live-stop", disabled: true });
  const open = h("button", { textContent: "Open output page", className: "rap-live-open", disabled: true });
  const canvas = h("canvas", { className: "rap-live-canvas", width: 128, height: 128 });
  const readouts = h("div", { className: "readouts rap-live-readouts" });
  const status = h("div", { className: "rap-live-status", textContent: "Pick a portrait, then Start." });
  const panel = h(
    "div",
    { className: "rap-live" },
    labelled("Portrait", portrait, upload, portraitFile),
    labelled("Preset", preset),
    h(
      "details",
      {},
      h("summary", { textContent: "Model files" }),
      ...MODEL_FILES.map(([field, , label]) => labelled(label, files[field])),
    ),
    labelled("Source", source),
    audioRow,
    h("div", { className: "row" }, start, stop, open),
    canvas,
    readouts,
    status,
  );

  let run = null;
  const say = (text, isError = false) => {
    status.textContent = text;
    status.classList.toggle("error", isError);
  };
  const setRunning = (on) => {
    for (const control of [portrait, upload, preset, source, audioFile, start, ...Object.values(files)])
      control.disabled = on;
    stop.disabled = !on;
  };
  const refresh = async () => {
    try {
      fill(portrait, await comboOptions("LoadImage", "image"));
      fill(preset, (await comboOptions("RAPModelLoader", "preset")).filter((name) => name !== "auto"), "demo");
      for (const [field, node] of MODEL_FILES) fill(files[field], await comboOptions(node, field), "built-in");
    } catch (error) {
      say(`Could not list the choices: ${error.message}`, true);
    }
  };

  upload.onclick = () => portraitFile.click();
  portraitFile.onchange = async () => {
    const [file] = portraitFile.files;
    if (!file) return;
    try {
      const name = await uploadPortrait(file);
      await refresh();
      portrait.value = name;
    } catch (error) {
      say(error.message, true);
    }
    portraitFile.value = "";
  };
  source.onchange = () => (audioRow.hidden = source.value !== "file");
  start.onclick = async () => {
    const file = source.value === "file" ? audioFile.files[0] : null;
    if (source.value === "file" && !file) return say("Choose an audio file first.", true);
    if (!portrait.value) return say("Upload a portrait first.", true);
    setRunning(true);
    run = new LiveRun(canvas, say, () => setRunning(false));
    const fields = Object.fromEntries(Object.entries(files).map(([field, select]) => [field, select.value]));
    try {
      await run.begin({ portrait: portrait.value, preset: preset.value, ...fields }, file);
    } catch (error) {
      say(error.message, true);
      run.finish();
    }
  };
  stop.onclick = () => run?.stop();
  open.onclick = () => window.open(`${api.fileURL(VIEW)}?session=${encodeURIComponent(run.session)}`, "_blank");

  setInterval(() => {
    open.disabled = !run?.session || run.over;
    const stats = run?.stats;
    if (!stats) return;
    const latency = stats.latencyMs === null ? "–" : Math.round(stats.latencyMs);
    readouts.textContent = `latency ${latency} ms · ${stats.fpsShown} fps · ${stats.dropped} dropped`;
  }, 250);
  return { panel, refresh };
}
