// simscore web page: the entry module. One candidate goes to POST /compare (with its SSIM map);
// several go to POST /compare/batch and fill the review table. Plain JavaScript modules: no
// build step, no dependency, nothing loaded from elsewhere (the page's CSP forbids it).

import { compareBatch, compareOne, differenceMap, storeKey, storedKey } from "./api.js";
import { chosenScores, fillPicker, loadCatalog, showMapKinds } from "./catalog.js";
import { offerDownloads } from "./export.js";
import { byName, fileUrl, setUpPicker } from "./pickers.js";
import { showProvenance } from "./provenance.js";
import { showScores } from "./scores.js";
import { createTable } from "./table.js";
import { hasVerdicts, notPassed, showVerdict, verdictSummary } from "./verdict.js";
import { createViewer } from "./views.js";

// Candidates per /compare/batch request: well under SIMSCORE_MAX_BATCH_CANDIDATES (64 by
// default), so a long list shows progress and never hits that limit.
const CANDIDATES_PER_REQUEST = 16;

const form = document.getElementById("compare-form");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const review = document.getElementById("review");
const pairSection = document.getElementById("pair");
const footer = results.querySelector(".results-footer");
const keyInput = form.elements.api_key;
const submitButton = form.querySelector("button[type=submit]");
const reviewFilter = review.querySelector(".review-filter");
const failuresOnly = document.getElementById("failures-only");
const picker = document.getElementById("score-picker");
const viewerRoot = document.getElementById("viewer");

let run = null; // the last successful comparison: {reference, options, entries}
let catalogKnown = false; // GET /scores answered (with the key of the time)

function setStatus(text, state) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", state === "error");
  results.dataset.state = state;
}

/** What the form asks for now; the key is read again for every request. */
function requestOptions() {
  return {
    key: keyInput.value.trim(),
    sizePolicy: form.elements.size_policy.value,
    mask: form.elements.mask.files[0] || null,
    thresholds: form.elements.thresholds.value.trim(),
    scores: chosenScores(picker),
  };
}

/** Ask the server which scores it can compute (again when the key changes). */
async function refreshCatalog() {
  const entries = await loadCatalog(keyInput.value.trim());
  catalogKnown = entries !== null;
  fillPicker(picker, entries);
  showMapKinds(viewerRoot, entries);
}

async function loadMap(pair, kind) {
  const options = { ...run.options, key: keyInput.value.trim() };
  const { png } = await differenceMap(run.reference, pair.file, kind, options);
  return URL.createObjectURL(png);
}

const viewer = createViewer(viewerRoot, loadMap);
const table = createTable(document.getElementById("review-table"), openEntry);

function openEntry(entry) {
  table.select(entry);
  document.getElementById("pair-name").textContent = entry.name;
  showScores(pairSection, entry.item);
  showVerdict(pairSection, entry.item);
  viewerRoot.hidden = Boolean(entry.item.error);
  if (!entry.item.error) {
    entry.pair ??= {
      name: entry.name,
      file: entry.file,
      referenceUrl: fileUrl(run.reference),
      candidateUrl: entry.url,
      width: entry.item.image.width,
      height: entry.item.image.height,
      maps: entry.item.map_png_base64
        ? { ssim: Promise.resolve(`data:image/png;base64,${entry.item.map_png_base64}`) }
        : {},
    };
    viewer.show(entry.pair);
  }
  pairSection.hidden = false;
}

async function scoreAll(reference, candidates, options) {
  if (candidates.length === 1) return [await compareOne(reference, candidates[0], options)];
  const items = [];
  for (let start = 0; start < candidates.length; start += CANDIDATES_PER_REQUEST) {
    const chunk = candidates.slice(start, start + CANDIDATES_PER_REQUEST);
    setStatus(`Scoring ${start + chunk.length} of ${candidates.length} candidates\u2026`, "busy");
    items.push(...(await compareBatch(reference, chunk, options)));
  }
  return items;
}

function summary(entries) {
  if (hasVerdicts(entries)) return verdictSummary(entries);
  if (entries.length === 1) return "Done.";
  const failed = entries.filter((entry) => entry.item.error).length;
  return `Scored ${entries.length} candidates` + (failed ? `; ${failed} failed.` : ".");
}

function show(current) {
  const { entries } = current;
  const scored = entries.find((entry) => !entry.item.error);
  review.hidden = entries.length < 2;
  reviewFilter.hidden = !hasVerdicts(entries);
  failuresOnly.checked = false;
  reviewFilter.querySelector("[data-count=not-passed]").textContent =
    String(entries.filter(notPassed).length);
  table.show(entries);
  showProvenance(results, scored ? scored.item : null);
  offerDownloads(results, entries, current.reference.name);
  footer.hidden = false;
  openEntry(scored || entries[0]);
}

async function compare(event) {
  event.preventDefault();
  if (!form.reportValidity()) return;
  const reference = form.elements.reference.files[0];
  const candidates = byName(form.elements.candidate.files);
  const options = requestOptions();
  submitButton.disabled = true;
  review.hidden = true;
  pairSection.hidden = true;
  footer.hidden = true;
  showProvenance(results, null);
  setStatus("Scoring\u2026", "busy");
  try {
    const items = await scoreAll(reference, candidates, options);
    const entries = candidates.map((file, i) => ({
      name: file.name,
      file,
      url: fileUrl(file),
      item: items[i],
    }));
    run = { reference, options, entries };
    if (!catalogKnown) await refreshCatalog(); // the key is good now: the heat-map kinds
    show(run);
    setStatus(summary(entries), "done");
  } catch (error) {
    setStatus(error.message, "error");
    if (error.status === 401) {
      form.querySelector("#options").open = true;
      keyInput.focus();
    }
  } finally {
    submitButton.disabled = false;
  }
}

keyInput.value = storedKey();
keyInput.addEventListener("input", () => storeKey(keyInput.value.trim()));
keyInput.addEventListener("change", refreshCatalog);
fillPicker(picker, null);
refreshCatalog();
document.querySelectorAll("[data-drop-for]").forEach((zone) => setUpPicker(form, zone));
form.addEventListener("submit", compare);
failuresOnly.addEventListener("change", () => table.onlyNotPassed(failuresOnly.checked));
// Dropping a file outside a picker must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
