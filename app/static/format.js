// Numbers: one rule for the screen (readable) and one for files (exact, as Python writes them).

// The wire vocabulary (simscore_client/vocabulary.py): every score, and the default ones.
export const DEFAULT_SCORES = ["vgg", "style", "ssim", "mse", "psnr"];
export const SCORE_NAMES = [...DEFAULT_SCORES, "lpips", "lpips_vgg", "dists", "flip", "ms_ssim"];
// Which way is "less alike": larger distances, smaller ssim and psnr (GET /scores: direction).
export const LOWER_IS_MORE_ALIKE = new Set([
  "vgg", "style", "mse", "lpips", "lpips_vgg", "dists", "flip",
]);

/**
 * The score columns of a table or a CSV of these answers, as `score_columns` in the vocabulary
 * chooses them: the default scores, then every other score that a scored answer has a value for.
 */
export function scoreColumns(items) {
  const shown = new Set(DEFAULT_SCORES);
  for (const item of items) {
    if (item.error || !item.scores) continue;
    for (const name of SCORE_NAMES) {
      const value = item.scores[name];
      if (value !== null && value !== undefined) shown.add(name);
    }
  }
  return SCORE_NAMES.filter((name) => shown.has(name));
}
export const TAP_NAMES = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
export const SIGNIFICANT_DIGITS = 4;
const NOT_COMPUTED = "\u2014"; // an em dash: the server did not compute this value

/**
 * A measured number on screen: at most 4 significant digits.
 * Plain decimals from 0.001 up to 9999 keep their 4 digits ("0.8362", "0.001779", "27.50");
 * beyond that range, a short exponent form with trailing zeros dropped ("1.143e-5", "3.1e-5",
 * "2e-12", "1.235e4"). Zero is "0". Rounding is JavaScript's: to the nearest, a tie of the
 * exact binary value away from zero.
 */
export function formatNumber(value) {
  if (value === 0) return "0";
  const [mantissa, exponentText] = value.toExponential(SIGNIFICANT_DIGITS - 1).split("e");
  const exponent = Number(exponentText); // after rounding to 4 digits: 9.9996e-4 -> 1.000e-3
  if (exponent >= -3 && exponent < SIGNIFICANT_DIGITS) {
    return Number(`${mantissa}e${exponent}`).toFixed(SIGNIFICANT_DIGITS - 1 - exponent);
  }
  return `${mantissa.replace(/\.?0+$/, "")}e${exponent}`;
}

/** PSNR in dB with one decimal ("27.5 dB"); the number part is at most 5 characters. */
export function formatDecibels(value) {
  const fixed = value.toFixed(1);
  return `${fixed.length <= 5 ? fixed : formatNumber(value)} dB`;
}

/**
 * One score as shown. `scores` is the whole `scores` object of the answer: a null psnr with
 * mse 0 means identical images (no finite PSNR), shown as "identical".
 */
export function formatScore(name, value, scores) {
  if (value === null || value === undefined) {
    return name === "psnr" && scores && scores.mse === 0 ? "identical" : NOT_COMPUTED;
  }
  return name === "psnr" ? formatDecibels(value) : formatNumber(value);
}

/** The full value for a tooltip: every digit the server sent. */
export function fullValue(name, value, scores) {
  if (value === null || value === undefined) {
    return name === "psnr" && scores && scores.mse === 0
      ? "null: identical images have no finite PSNR"
      : "not computed";
  }
  return name === "psnr" ? `${String(value)} dB` : String(value);
}

/** Milliseconds, pixels and other plain quantities: the same 4-digit rule. */
export function formatMs(value) {
  return `${formatNumber(value)} ms`;
}

/**
 * Python's `repr(float)` of a JavaScript number: the shortest digits that round-trip (which is
 * what `toExponential()` without an argument gives), in fixed notation for decimal exponents
 * from -4 to 15 ("0.0001", "123.456", "0.0", "1234567890123456.0") and in exponent notation
 * outside it, with a sign and at least two exponent digits ("1e-05", "2.5e-07", "1e+16").
 */
export function pythonFloatRepr(value) {
  if (!Number.isFinite(value)) throw new RangeError(`${value} has no finite repr`);
  const sign = value < 0 || Object.is(value, -0) ? "-" : "";
  const [mantissa, exponentText] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exponent = Number(exponentText);
  if (exponent < -4 || exponent >= 16) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const exponentSign = exponent < 0 ? "-" : "+";
    const exponentDigits = String(Math.abs(exponent)).padStart(2, "0");
    return `${sign}${digits[0]}${fraction}e${exponentSign}${exponentDigits}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  return `${sign}${whole}.${digits.slice(exponent + 1) || "0"}`;
}
