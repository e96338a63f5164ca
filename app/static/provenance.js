// Where the numbers come from: the model, its weights, device, precision, compared size and
// mask coverage, and a warning that cannot be missed when the weights are random.

import { formatNumber } from "./format.js";

/** `item`: any scored answer of the request (null when every candidate failed). */
export function showProvenance(root, item) {
  const warning = root.querySelector("[data-warning=random-weights]");
  const line = root.querySelector("#provenance");
  if (!item) {
    warning.hidden = true;
    line.hidden = true;
    return;
  }
  const { model, image } = item;
  const randomBackbones = Object.values(model.backbones || {}).some((b) => b.weights === "random");
  warning.hidden = model.weights !== "random" && !randomBackbones;
  warning.querySelector("[data-warning-extra]").hidden = !randomBackbones;
  const fields = {
    model: model.name,
    weights: model.weights,
    sha256: model.sha256,
    device: model.device,
    precision: model.precision,
    size: `${image.width}\u00d7${image.height} px`,
  };
  for (const [name, value] of Object.entries(fields)) {
    line.querySelector(`[data-provenance=${name}]`).textContent = value;
  }
  const coverage = image.mask_coverage;
  const masked = line.querySelector("[data-provenance=mask]");
  masked.hidden = coverage === null || coverage === undefined;
  if (!masked.hidden) {
    const cell = line.querySelector("[data-provenance=coverage]");
    cell.textContent = `${formatNumber(100 * coverage)} %`;
    cell.title = String(coverage);
  }
  line.hidden = false;
}
