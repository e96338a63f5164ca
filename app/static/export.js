// The results as files: CSV byte for byte as `simscore compare REF FOLDER --csv` writes it
// (simscore_client/vocabulary.py: CSV_COLUMNS, csv_value, csv_row; Python's csv module), and
// JSON with every item as the API returned it.

import { DEFAULT_SCORES, pythonFloatRepr, scoreColumns } from "./format.js";

/** The header for these score columns (`csv_columns` in the vocabulary). */
export function csvColumns(scores = DEFAULT_SCORES) {
  return ["candidate", ...scores, "width", "height", "resized", "passed", "failed", "error"];
}

export const CSV_COLUMNS = csvColumns();

/** One cell as `csv_value` writes it: floats as Python's repr, null empty, booleans lower case. */
function floatCell(value) {
  return value === null || value === undefined || !Number.isFinite(value)
    ? ""
    : pythonFloatRepr(value);
}

/**
 * The row of one candidate for the score columns `scores`, as `csv_row(name, body, scores=...)`
 * or `csv_row(name, None, detail, scores=...)`.
 */
export function csvRow(name, item, scores = DEFAULT_SCORES) {
  if (item.error) {
    return [name, ...Array(scores.length + 5).fill(""), item.error.detail || "error"];
  }
  const { image, verdict } = item;
  return [
    name,
    ...scores.map((score) => floatCell(item.scores[score])),
    String(image.width),
    String(image.height),
    image.resized ? "true" : "false",
    verdict ? String(verdict.passed) : "",
    verdict ? verdict.failed.join(",") : "",
    "",
  ];
}

/** A field as csv.writer's QUOTE_MINIMAL writes it. */
function quote(field) {
  return /[",\r\n]/.test(field) ? `"${field.replaceAll('"', '""')}"` : field;
}

/**
 * `entries`: [{name, item}] in the order scored; the columns of `scoreColumns` for their items.
 * Lines end with CRLF, as Python's csv does.
 */
export function toCsv(entries) {
  const scores = scoreColumns(entries.map((entry) => entry.item));
  const rows = [
    csvColumns(scores),
    ...entries.map((entry) => csvRow(entry.name, entry.item, scores)),
  ];
  return rows.map((row) => `${row.map(quote).join(",")}\r\n`).join("");
}

/**
 * `{passed, failed, errors}` as `POST /compare/batch` counts them, over every entry (the page
 * may have sent several requests); null when no entry has a verdict (no thresholds).
 */
export function summarize(entries) {
  const scored = entries.filter((entry) => !entry.item.error);
  if (!scored.some((entry) => entry.item.verdict)) return null;
  const passed = scored.filter((entry) => entry.item.verdict?.passed).length;
  return { passed, failed: scored.length - passed, errors: entries.length - scored.length };
}

/** `{"results": [{"candidate": name, ...item}], "model": {...}}`, and `summary` with verdicts. */
export function toJson(entries) {
  const scored = entries.find((entry) => !entry.item.error);
  const document = {
    results: entries.map((entry) => ({ candidate: entry.name, ...entry.item })),
    model: scored ? scored.item.model : null,
  };
  const summary = summarize(entries);
  if (summary) document.summary = summary;
  return `${JSON.stringify(document, null, 2)}\n`;
}

const links = new Map(); // the object URL each export link holds now

function offer(anchor, text, type, filename) {
  if (links.has(anchor)) URL.revokeObjectURL(links.get(anchor));
  const url = URL.createObjectURL(new Blob([text], { type }));
  links.set(anchor, url);
  anchor.href = url;
  anchor.download = filename;
}

/** Point the download links `a[data-export=csv|json]` at the current results. */
export function offerDownloads(root, entries, referenceName) {
  const stem = referenceName.replace(/\.[^.]*$/, "") || "results";
  offer(root.querySelector("a[data-export=csv]"), toCsv(entries), "text/csv", `simscore-${stem}.csv`);
  offer(
    root.querySelector("a[data-export=json]"),
    toJson(entries),
    "application/json",
    `simscore-${stem}.json`,
  );
}
