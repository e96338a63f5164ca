// simscore web page: pick or drop two images, POST /compare (include_map=true), show the result.
// Plain browser JavaScript: no build step, no dependency, nothing loaded from elsewhere.
"use strict";

const METRICS = ["vgg", "style", "ssim", "mse", "psnr"];
const TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

const form = document.getElementById("compare-form");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const submitButton = form.querySelector("button[type=submit]");
const previewUrls = {};

// A number exactly as the API returned it (JSON number -> shortest round-trip text).
function numberText(value) {
  return value === null || value === undefined ? "" : String(value);
}

function showPreview(name) {
  const input = form.elements[name];
  const img = document.getElementById(`${name}-preview`);
  if (previewUrls[name]) URL.revokeObjectURL(previewUrls[name]);
  const file = input.files && input.files[0];
  if (!file) {
    img.hidden = true;
    img.removeAttribute("src");
    return;
  }
  previewUrls[name] = URL.createObjectURL(file);
  img.src = previewUrls[name];
  img.alt = `${name} preview: ${file.name}`;
  img.hidden = false;
}

function setUpPicker(zone) {
  const name = zone.dataset.dropFor;
  const input = form.elements[name];
  input.addEventListener("change", () => showPreview(name));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length === 0) return;
    const picked = new DataTransfer();
    picked.items.add(files[0]);
    input.files = picked.files;
    showPreview(name);
  });
}

function setStatus(text, state) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", state === "error");
  results.dataset.state = state;
}

function fillBars(tableId, layers) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!layers) return;
  const largest = Math.max(...TAPS.map((tap) => layers[tap]), Number.MIN_VALUE);
  for (const tap of TAPS) {
    const row = body.insertRow();
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = tap;
    row.appendChild(name);
    const barCell = row.insertCell();
    barCell.className = "bar-cell";
    barCell.setAttribute("aria-hidden", "true");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(0, (100 * layers[tap]) / largest)}%`;
    barCell.appendChild(bar);
    const value = row.insertCell();
    value.className = "number";
    value.textContent = numberText(layers[tap]);
  }
}

function showResult(body) {
  for (const name of METRICS) {
    let text = numberText(body.scores[name]);
    if (name === "psnr" && body.scores.psnr === null && body.scores.mse === 0) text = "Infinity";
    document.querySelector(`[data-metric="${name}"]`).textContent = text;
  }
  fillBars("layers-vgg", body.layers.vgg);
  fillBars("layers-style", body.layers.style);
  const image = body.image;
  const weights = body.model.weights === "random" ? " (RANDOM development weights)" : "";
  document.getElementById("image-info").textContent =
    `Compared at ${image.width}\u00d7${image.height} px` +
    (image.candidate_resized ? ", candidate resized" : "") +
    `; ${body.model.name} on ${body.model.device}${weights}; ` +
    `${body.timing_ms.total_ms} ms on the server.`;
  const map = document.getElementById("ssim-map");
  if (body.map_png_base64) {
    map.src = `data:image/png;base64,${body.map_png_base64}`;
    map.alt = `Local SSIM heat map, ${image.width} by ${image.height} pixels: yellow where the ` +
      "images look alike, dark purple where they differ.";
    map.hidden = false;
  } else {
    map.hidden = true;
  }
}

async function compare(event) {
  event.preventDefault();
  if (!form.reportValidity()) return;
  const data = new FormData();
  data.append("reference", form.elements.reference.files[0]);
  data.append("candidate", form.elements.candidate.files[0]);
  data.append("size_policy", form.elements.size_policy.value);
  data.append("include_map", "true");
  data.append("map_kind", "ssim");
  const headers = {};
  const key = document.getElementById("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  submitButton.disabled = true;
  setStatus("Scoring\u2026", "busy");
  try {
    const response = await fetch("compare", { method: "POST", body: data, headers });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      setStatus(`Error ${response.status}: ${body.detail}`, "error");
      return;
    }
    showResult(body);
    setStatus("Done.", "done");
  } catch (error) {
    setStatus(`Could not reach the server: ${error.message}`, "error");
  } finally {
    submitButton.disabled = false;
  }
}

document.querySelectorAll("[data-drop-for]").forEach(setUpPicker);
form.addEventListener("submit", compare);
// Dropping a file outside a picker must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
