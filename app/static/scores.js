// The pair view's numbers: the default scores and any other the answer has, the per-layer bars,
// the compared size.

import { meaning } from "./catalog.js";
import {
  DEFAULT_SCORES,
  LOWER_IS_MORE_ALIKE,
  TAP_NAMES,
  formatMs,
  formatNumber,
  formatScore,
  fullValue,
  scoreColumns,
} from "./format.js";

function fillBars(table, layers) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!layers) return;
  const largest = Math.max(...TAP_NAMES.map((tap) => layers[tap]), Number.MIN_VALUE);
  for (const tap of TAP_NAMES) {
    const row = body.insertRow();
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = tap;
    row.append(name);
    const barCell = row.insertCell();
    barCell.className = "bar-cell";
    barCell.setAttribute("aria-hidden", "true");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(0, (100 * layers[tap]) / largest)}%`;
    barCell.append(bar);
    const value = row.insertCell();
    value.className = "number";
    value.textContent = formatNumber(layers[tap]);
    value.title = String(layers[tap]);
  }
}

function size(box) {
  return `${box.width}\u00d7${box.height} px`;
}

function describeImage(item) {
  const { image } = item;
  const parts = [`Compared at ${size(image)}`];
  if (image.reference_resized) parts.push(`reference downscaled from ${size(image.reference)}`);
  if (image.candidate_resized) parts.push(`candidate resized from ${size(image.candidate)}`);
  return `${parts.join("; ")}. ${formatMs(item.timing_ms.total_ms)} on the server` +
    (item.reference_cached ? " (reference features from the cache)." : ".");
}

/** The rows of the opt-in scores `item` has, after the default five (made afresh each time). */
function extraRows(root, item) {
  const body = root.querySelector("table.scores tbody");
  body.querySelectorAll("tr[data-extra]").forEach((row) => row.remove());
  const extra = item.error ? [] : scoreColumns([item]).filter((n) => !DEFAULT_SCORES.includes(n));
  for (const name of extra) {
    const row = body.insertRow();
    row.dataset.extra = "";
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = name;
    row.append(head);
    const output = document.createElement("output");
    output.dataset.metric = name;
    row.insertCell().append(output);
    const identical = LOWER_IS_MORE_ALIKE.has(name) ? "0" : "1";
    row.insertCell().textContent = `${meaning(name)} (${identical} = identical)`;
  }
  return extra;
}

/** Show `item` (a `/compare` answer or a batch item) in the pair view `root`. */
export function showScores(root, item) {
  const failed = Boolean(item.error);
  for (const name of [...DEFAULT_SCORES, ...extraRows(root, item)]) {
    const output = root.querySelector(`output[data-metric="${name}"]`);
    output.textContent = failed ? "" : formatScore(name, item.scores[name], item.scores);
    output.title = failed ? "" : fullValue(name, item.scores[name], item.scores);
  }
  const error = root.querySelector("#pair-error");
  error.hidden = !failed;
  error.querySelector("[data-verbatim]").textContent = failed ? item.error.detail : "";
  error.querySelector("strong").textContent = failed ? `Error ${item.error.status}: ` : "";
  root.querySelector("#image-info").textContent = failed ? "" : describeImage(item);
  fillBars(root.querySelector("#layers-vgg"), failed ? null : item.layers.vgg);
  fillBars(root.querySelector("#layers-style"), failed ? null : item.layers.style);
}
