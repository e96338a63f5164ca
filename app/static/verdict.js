// Verdicts: what the server said of each candidate against the thresholds (its own, or the
// request's). The page never checks a condition itself: it shows the answer's `verdict`.

/** "pass", "fail", "error" (the candidate could not be scored) or null (no thresholds). */
export function verdictOf(item) {
  if (item.error) return "error";
  if (!item.verdict) return null;
  return item.verdict.passed ? "pass" : "fail";
}

/** Whether any of the answers carries a verdict (the thresholds applied to the request). */
export function hasVerdicts(entries) {
  return entries.some((entry) => Boolean(entry.item.verdict));
}

/** Not passed: failed its thresholds, or could not be scored. */
export function notPassed(entry) {
  const verdict = verdictOf(entry.item);
  return verdict === "fail" || verdict === "error";
}

/** The failed conditions as the server wrote them: "ssim>=0.92, vgg<=0.05". */
export function failedText(item) {
  return item.verdict && !item.verdict.passed ? item.verdict.failed.join(", ") : "";
}

/** A badge for `item`: `<span class="badge" data-verdict="pass|fail|error">`. */
export function badge(item) {
  const verdict = verdictOf(item);
  const element = document.createElement("span");
  element.className = "badge";
  element.dataset.verdict = verdict || "none";
  element.textContent = verdict || "";
  if (verdict === "fail") element.title = `Failed: ${failedText(item)}`;
  if (verdict === "pass") element.title = "Every condition held";
  return element;
}

/** Fill the pair view's verdict line (`#pair-verdict`) for `item`, or hide it. */
export function showVerdict(root, item) {
  const line = root.querySelector("#pair-verdict");
  const verdict = item.error ? null : verdictOf(item);
  line.hidden = !verdict;
  if (!verdict) return;
  line.querySelector(".badge").replaceWith(badge(item));
  const failed = line.querySelector("[data-failed]");
  failed.dataset.verbatim = "";
  failed.textContent = verdict === "fail" ? `failed ${failedText(item)}` : "every condition held";
}

/** The status line's words for a finished run with verdicts. */
export function verdictSummary(entries) {
  const counts = { pass: 0, fail: 0, error: 0 };
  for (const entry of entries) {
    const verdict = verdictOf(entry.item);
    if (verdict) counts[verdict] += 1;
  }
  if (entries.length === 1) {
    return counts.pass ? "Done: passed." : `Done: failed ${failedText(entries[0].item)}.`;
  }
  const parts = [`${counts.pass} passed`, `${counts.fail} failed`];
  if (counts.error) parts.push(`${counts.error} could not be scored`);
  return `Scored ${entries.length} candidates: ${parts.join(", ")}.`;
}
