// What this server can score: GET /scores, read when the page loads and again when the API key
// changes. It fills the score picker (the default scores ticked; an opt-in score the server
// cannot compute is disabled, with the server's reason beside it) and shows the heat-map kinds
// the server's networks draw. Without an answer (a key not given yet), the default scores alone.

import { DEFAULT_SCORES, LOWER_IS_MORE_ALIKE } from "./format.js";

const MEANINGS = {
  vgg: "VGG19 feature distance",
  style: "Gram-matrix style distance",
  ssim: "structural similarity",
  mse: "mean squared error",
  psnr: "peak signal-to-noise ratio",
  lpips: "LPIPS with AlexNet",
  lpips_vgg: "LPIPS with VGG16",
  dists: "DISTS, structure and texture",
  flip: "FLIP, NVIDIA's difference evaluator",
  ms_ssim: "multi-scale SSIM (161 px and up)",
};

/** The answer's entries, or null when the server did not answer (401 without a key, ...). */
export async function loadCatalog(key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  try {
    const response = await fetch("scores", { headers });
    if (!response.ok) return null;
    return (await response.json()).scores;
  } catch {
    return null;
  }
}

/** What a score means, in a few words, for the pair view and the picker. */
export function meaning(name) {
  return MEANINGS[name] || name;
}

function checkbox(entry, checked) {
  const label = document.createElement("label");
  label.className = "score-choice";
  label.dataset.score = entry.name;
  const input = document.createElement("input");
  input.type = "checkbox";
  input.name = "scores";
  input.value = entry.name;
  input.checked = checked && entry.available !== false;
  input.disabled = entry.available === false;
  label.append(input, ` ${entry.name} `);
  const note = document.createElement("span");
  note.className = "score-note";
  note.textContent = `(${meaning(entry.name)})`;
  label.append(note);
  if (entry.available === false) {
    const why = document.createElement("span");
    why.className = "score-unavailable";
    why.dataset.verbatim = "";
    why.textContent = ` not available on this server: ${entry.reason}`;
    label.append(why);
    label.title = entry.reason || "";
  }
  return label;
}

/**
 * Fill `picker` (a fieldset) with a checkbox per score, keeping what was ticked; `entries`
 * null: the default scores alone. Directions of the entries update LOWER_IS_MORE_ALIKE.
 */
export function fillPicker(picker, entries) {
  const ticked = new Set(
    [...picker.querySelectorAll("input[name=scores]:checked")].map((input) => input.value),
  );
  const fresh = picker.querySelectorAll("input[name=scores]").length === 0;
  const list = entries || DEFAULT_SCORES.map((name) => ({ name, available: true, default: true }));
  picker.querySelectorAll(".score-choice").forEach((label) => label.remove());
  for (const entry of list) {
    if (entry.direction === "lower") LOWER_IS_MORE_ALIKE.add(entry.name);
    if (entry.direction === "higher") LOWER_IS_MORE_ALIKE.delete(entry.name);
    const checked = fresh ? Boolean(entry.default) : ticked.has(entry.name);
    picker.append(checkbox(entry, checked));
  }
}

/**
 * The `scores` field to send: null when the default scores alone are ticked (or none is: the
 * server's default), else the ticked names, comma-separated.
 */
export function chosenScores(picker) {
  const names = [...picker.querySelectorAll("input[name=scores]:checked")].map((i) => i.value);
  const defaults = names.length === DEFAULT_SCORES.length &&
    DEFAULT_SCORES.every((name) => names.includes(name));
  return names.length === 0 || defaults ? null : names.join(",");
}

/** Show the heat-map buttons of the kinds the server's available networks draw. */
export function showMapKinds(viewer, entries) {
  const drawn = new Set((entries || []).filter((e) => e.available && e.map_kind).map((e) => e.map_kind));
  for (const button of viewer.querySelectorAll("button[data-map-kind][data-network]")) {
    button.hidden = !drawn.has(button.dataset.mapKind);
  }
}
