// What the tab's pickers offer, read from ComfyUI itself: the portraits LoadImage lists, the presets and model files
// the RAP loaders list (so they match what a session can load); and uploading a portrait as LoadImage does.
import { api } from "../../../scripts/api.js";

// The options of a node's combo input, in either form /object_info gives: [[...options], {...}] or
// ["COMBO", {options: [...]}].
export async function comboOptions(node, input) {
  const response = await api.fetchApi(`/object_info/${node}`);
  if (!response.ok) throw new Error(`/object_info/${node}: HTTP ${response.status}`);
  const { required = {}, optional = {} } = (await response.json())[node].input;
  const spec = required[input] ?? optional[input];
  return spec[0] === "COMBO" ? spec[1].options : spec[0];
}

// Uploads an image into ComfyUI's input folder -> the name it got there.
export async function uploadPortrait(file) {
  const body = new FormData();
  body.append("image", file);
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (!response.ok) throw new Error(`upload of ${file.name} failed: HTTP ${response.status}`);
  return (await response.json()).name;
}
