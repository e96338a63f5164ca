// The three scoring endpoints, the API key and what an error means, in words.

const KEY_STORAGE = "simscore.apiKey"; // sessionStorage: gone when the tab closes

export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function storeKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** A failed request: `status` (0 when the server was not reached), the server's `detail`. */
export class ApiError extends Error {
  constructor(status, detail, message) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

function explain(status, detail, sentKey, retryAfter) {
  if (status === 401) {
    return sentKey
      ? "The server refused this API key: check the key under Options."
      : "The server needs an API key: enter it under Options.";
  }
  if (status === 429 || status === 503) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return `The server is busy (${status}): ${detail}.${wait}`;
  }
  return `Error ${status}: ${detail}`;
}

/**
 * POST a multipart form to `path` (relative, so the page also works under a path prefix).
 * `options`: `key` (sent as a Bearer token when set), `mask`, `sizePolicy`, `scores` and
 * `thresholds` (sent only when given: left empty, the server's defaults apply: the default
 * scores, and SIMSCORE_THRESHOLDS if it has any).
 */
async function post(path, form, options) {
  if (options.scores) form.append("scores", options.scores);
  if (options.mask) form.append("mask", options.mask);
  if (options.sizePolicy) form.append("size_policy", options.sizePolicy);
  if (options.thresholds) form.append("thresholds", options.thresholds);
  const headers = options.key ? { Authorization: `Bearer ${options.key}` } : {};
  let response;
  try {
    response = await fetch(path, { method: "POST", body: form, headers });
  } catch (error) {
    throw new ApiError(0, error.message, `Could not reach the server: ${error.message}`);
  }
  if (response.ok) return response;
  const body = await response.json().catch(() => ({}));
  const detail = body.detail || response.statusText || "no detail";
  const message = explain(
    response.status,
    detail,
    Boolean(options.key),
    response.headers.get("Retry-After"),
  );
  throw new ApiError(response.status, detail, message);
}

/** `POST /compare` with the SSIM map: the answer's JSON. */
export async function compareOne(reference, candidate, options) {
  const form = new FormData();
  form.append("reference", reference);
  form.append("candidate", candidate);
  form.append("include_map", "true");
  form.append("map_kind", "ssim");
  return (await post("compare", form, options)).json();
}

/** `POST /compare/batch`: one item per candidate, in order (a scored pair or `{error}`). */
export async function compareBatch(reference, candidates, options) {
  const form = new FormData();
  form.append("reference", reference);
  for (const candidate of candidates) form.append("candidates", candidate);
  const body = await (await post("compare/batch", form, options)).json();
  return body.results;
}

/** `POST /compare/map`: the heat map PNG as a Blob, and the range it was drawn with. */
export async function differenceMap(reference, candidate, kind, options) {
  const form = new FormData();
  form.append("reference", reference);
  form.append("candidate", candidate);
  form.append("map_kind", kind);
  const response = await post("compare/map", form, { ...options, thresholds: "", scores: null });
  return { png: await response.blob(), range: response.headers.get("X-Map-Range") };
}
