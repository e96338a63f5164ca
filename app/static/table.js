// The review table: one row per candidate, every score readable, sortable worst first; with
// thresholds, a verdict badge per candidate and a filter that keeps those that did not pass.

import {
  DEFAULT_SCORES,
  LOWER_IS_MORE_ALIKE as HIGHER_IS_WORSE,
  formatScore,
  fullValue,
  scoreColumns,
} from "./format.js";
import { badge, failedText, hasVerdicts, notPassed, verdictOf } from "./verdict.js";

/** The value a sort compares; a null psnr means identical images, the best possible. */
function sortValue(metric, item) {
  const value = item.scores[metric];
  if (value === null || value === undefined) return metric === "psnr" ? Infinity : NaN;
  return value;
}

/**
 * Rows in `order`: `worstFirst` puts the least alike candidate on top. Failed candidates and
 * missing values stay at the bottom either way; ties keep the order the files were scored in.
 */
export function sortEntries(entries, metric, worstFirst) {
  const direction = HIGHER_IS_WORSE.has(metric) === worstFirst ? -1 : 1;
  const keyed = entries.map((entry, index) => ({
    entry,
    index,
    value: entry.item.error ? NaN : sortValue(metric, entry.item),
  }));
  keyed.sort((a, b) => {
    const aMissing = Number.isNaN(a.value);
    const bMissing = Number.isNaN(b.value);
    if (aMissing || bMissing) return aMissing - bMissing || a.index - b.index;
    if (a.value === b.value) return a.index - b.index;
    return a.value < b.value ? -direction : direction;
  });
  return keyed.map((k) => k.entry);
}

function thumbnailCell(row, entry) {
  const cell = row.insertCell();
  cell.className = "thumb-cell";
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = "";
  img.addEventListener("error", () => {
    img.hidden = true;
    cell.append("no preview");
  });
  img.src = entry.url;
  cell.append(img);
}

function nameCell(row, entry) {
  const cell = document.createElement("th");
  cell.scope = "row";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "row-open";
  open.dataset.verbatim = "";
  open.textContent = entry.name;
  open.title = `Open ${entry.name} in the pair view`;
  cell.append(open);
  row.append(cell);
}

function verdictCell(row, item) {
  const cell = row.insertCell();
  cell.className = "verdict-cell";
  cell.dataset.column = "verdict";
  cell.append(badge(item));
  const failed = failedText(item);
  if (failed) {
    const conditions = document.createElement("span");
    conditions.className = "failed-conditions";
    conditions.dataset.verbatim = "";
    conditions.textContent = failed;
    cell.append(" ", conditions);
  }
}

function scoreCells(row, item, columns) {
  if (item.error) {
    const cell = row.insertCell();
    cell.colSpan = columns.length;
    cell.className = "row-error";
    cell.dataset.error = "";
    const status = document.createElement("strong");
    status.textContent = `Error ${item.error.status}: `;
    const detail = document.createElement("span");
    detail.dataset.verbatim = "";
    detail.textContent = item.error.detail;
    cell.append(status, detail);
    return;
  }
  for (const name of columns) {
    const cell = row.insertCell();
    cell.className = "number";
    cell.dataset.metric = name;
    cell.textContent = formatScore(name, item.scores[name], item.scores);
    cell.title = fullValue(name, item.scores[name], item.scores);
  }
}

/** A sortable header for an opt-in score, after the default ones (`th[data-extra]`). */
function extraHeader(metric, onSort) {
  const header = document.createElement("th");
  header.scope = "col";
  header.dataset.sort = metric;
  header.dataset.extra = "";
  header.setAttribute("aria-sort", "none");
  const button = document.createElement("button");
  button.type = "button";
  const state = document.createElement("span");
  state.className = "sort-state";
  button.append(metric, state);
  button.addEventListener("click", () => onSort(metric));
  header.append(button);
  return header;
}

/**
 * The table in `table` (its `thead` has `th[data-sort]` buttons for the default scores, one
 * added per other score the answers have, and a `th[data-column=verdict]` shown when the
 * answers have verdicts). `onOpen(entry)` runs when a row is clicked or its name pressed.
 */
export function createTable(table, onOpen) {
  const body = table.tBodies[0];
  const headerRow = table.tHead.rows[0];
  const verdictHeader = table.querySelector("th[data-column=verdict]");
  let entries = [];
  let sort = null; // {metric, worstFirst}
  let selected = null;
  let onlyNotPassed = false;
  const rowOf = new Map(); // entry -> its row, for the rows shown now

  function sortBy(metric) {
    sort = sort && sort.metric === metric
      ? { metric, worstFirst: !sort.worstFirst }
      : { metric, worstFirst: true };
    render();
  }

  function headers(columns) {
    const shown = [...headerRow.querySelectorAll("th[data-extra]")].map((th) => th.dataset.sort);
    const extra = columns.filter((name) => !DEFAULT_SCORES.includes(name));
    if (shown.join() === extra.join()) return;
    headerRow.querySelectorAll("th[data-extra]").forEach((th) => th.remove());
    for (const metric of extra) headerRow.append(extraHeader(metric, sortBy));
  }

  function render() {
    const columns = scoreColumns(entries.map((entry) => entry.item));
    headers(columns);
    const sorted = sort ? sortEntries(entries, sort.metric, sort.worstFirst) : entries;
    const shown = onlyNotPassed ? sorted.filter(notPassed) : sorted;
    const verdicts = hasVerdicts(entries);
    verdictHeader.hidden = !verdicts;
    rowOf.clear();
    const rows = shown.map((entry) => {
      const row = document.createElement("tr");
      row.dataset.candidateRow = "";
      row.dataset.name = entry.name;
      row.dataset.status = entry.item.error ? "failed" : "scored";
      if (verdicts) row.dataset.verdict = verdictOf(entry.item);
      if (entry === selected) row.setAttribute("aria-current", "true");
      thumbnailCell(row, entry);
      nameCell(row, entry);
      if (verdicts) verdictCell(row, entry.item);
      scoreCells(row, entry.item, columns);
      row.addEventListener("click", () => onOpen(entry));
      rowOf.set(entry, row);
      return row;
    });
    body.replaceChildren(...rows);
    for (const header of table.querySelectorAll("th[data-sort]")) {
      const active = sort && header.dataset.sort === sort.metric;
      const higherIsWorse = HIGHER_IS_WORSE.has(header.dataset.sort);
      const descending = active && higherIsWorse === sort.worstFirst;
      header.setAttribute("aria-sort", active ? (descending ? "descending" : "ascending") : "none");
      header.querySelector(".sort-state").textContent = active
        ? sort.worstFirst ? " (worst first)" : " (best first)"
        : "";
    }
  }

  for (const header of table.querySelectorAll("th[data-sort]")) {
    header.querySelector("button").addEventListener("click", () => sortBy(header.dataset.sort));
  }

  return {
    show(newEntries) {
      entries = newEntries;
      sort = null;
      selected = null;
      render();
    },
    select(entry) {
      selected = entry;
      for (const row of body.rows) row.removeAttribute("aria-current");
      rowOf.get(entry)?.setAttribute("aria-current", "true");
    },
    /** Show only the candidates that did not pass (failed, or could not be scored). */
    onlyNotPassed(on) {
      onlyNotPassed = on;
      render();
    },
  };
}
