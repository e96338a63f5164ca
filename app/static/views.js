// The diff views of one pair: side by side, swipe, onion skin and the heat map over the image.
// Every view draws the images at the compared size (the candidate stretched to it, as the
// server does), scaled by the zoom with the aspect kept.

const LEGENDS = {
  ssim: ["0: different", "1: identical"],
  abs: ["0: identical", "1: different"],
  lpips: ["0: identical", "1 and over: different"],
  lpips_vgg: ["0: identical", "1 and over: different"],
  flip: ["0: identical", "1: different"],
};
const ALTS = {
  ssim: "Local SSIM heat map over the candidate: yellow where the images look alike, dark " +
    "purple where they differ.",
  abs: "Absolute difference heat map over the candidate: dark purple where the images are " +
    "equal, yellow where they differ most.",
  lpips: "LPIPS (AlexNet) distance map over the candidate: dark purple where the network " +
    "sees no difference, yellow where it sees the most.",
  lpips_vgg: "LPIPS (VGG16) distance map over the candidate: dark purple where the network " +
    "sees no difference, yellow where it sees the most.",
  flip: "FLIP error map over the candidate (magma): black where an observer sees no " +
    "difference, pale yellow where the difference is largest.",
};
const AUTO_ZOOM_WIDTH_PX = 480; // "auto" zooms small images up to about this width

function autoZoom(width) {
  return [4, 2].find((zoom) => width * zoom <= AUTO_ZOOM_WIDTH_PX) || 1;
}

/**
 * The viewer in `root`. `loadMap(pair, kind)` resolves to an image URL for the heat map of
 * `kind` ("ssim", "abs", "lpips", "lpips_vgg", "flip"); the viewer asks once per pair and kind.
 */
export function createViewer(root, loadMap) {
  const controls = {
    zoom: root.querySelector("select[name=zoom]"),
    swipe: root.querySelector("input[name=swipe]"),
    opacity: root.querySelector("input[name=opacity]"),
    heatOpacity: root.querySelector("input[name=heat_opacity]"),
  };
  const heatPanel = root.querySelector("[data-view-panel=heatmap]");
  const mapImage = heatPanel.querySelector("img[data-image=map]");
  const mapStatus = heatPanel.querySelector(".map-status");
  let pair = null;
  let view = "side-by-side";
  let mapKind = "ssim";

  function layout() {
    if (!pair) return;
    const zoom = controls.zoom.value === "auto" ? autoZoom(pair.width) : Number(controls.zoom.value);
    root.dataset.zoom = controls.zoom.value;
    for (const stage of root.querySelectorAll(".stage")) {
      stage.style.aspectRatio = `${pair.width} / ${pair.height}`;
      stage.style.width = controls.zoom.value === "fit" ? "100%" : `${pair.width * zoom}px`;
      stage.classList.toggle("pixelated", controls.zoom.value !== "fit" && zoom > 1);
    }
  }

  function applySliders() {
    const swipe = Number(controls.swipe.value);
    for (const img of root.querySelectorAll("img[data-role=swipe]")) {
      img.style.clipPath = `inset(0 ${100 - swipe}% 0 0)`;
    }
    root.querySelector(".swipe-line").style.left = `${swipe}%`;
    for (const img of root.querySelectorAll("img[data-role=onion]")) {
      img.style.opacity = String(Number(controls.opacity.value) / 100);
    }
    mapImage.style.opacity = String(Number(controls.heatOpacity.value) / 100);
    for (const input of [controls.swipe, controls.opacity, controls.heatOpacity]) {
      root.querySelector(`output[for=${input.id}]`).textContent = `${input.value} %`;
    }
  }

  async function showMap() {
    if (!pair || view !== "heatmap") return;
    const [low, high] = LEGENDS[mapKind];
    heatPanel.querySelector(".legend-low").textContent = low;
    heatPanel.querySelector(".legend-high").textContent = high;
    const wanted = pair;
    const kind = mapKind;
    heatPanel.dataset.mapState = "loading";
    mapStatus.textContent = "Drawing the heat map\u2026";
    try {
      if (!wanted.maps[kind]) wanted.maps[kind] = loadMap(wanted, kind);
      const url = await wanted.maps[kind];
      if (wanted !== pair || kind !== mapKind) return; // another pair or kind was chosen since
      mapImage.src = url;
      await mapImage.decode().catch(() => undefined);
      mapImage.dataset.mapKind = kind;
      mapImage.alt = ALTS[kind];
      mapStatus.textContent = "";
      heatPanel.dataset.mapState = "done";
    } catch (error) {
      if (wanted !== pair) return;
      delete wanted.maps[kind]; // let a later try ask again
      mapStatus.textContent = error.message;
      heatPanel.dataset.mapState = "error";
    }
  }

  function setView(name) {
    view = name;
    for (const button of root.querySelectorAll("button[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === name));
    }
    for (const panel of root.querySelectorAll("[data-view-panel]")) {
      panel.hidden = panel.dataset.viewPanel !== name;
    }
    for (const control of root.querySelectorAll("[data-control-for]")) {
      control.hidden = control.dataset.controlFor !== name;
    }
    root.dataset.view = name;
    showMap();
  }

  function setMapKind(kind) {
    mapKind = kind;
    for (const button of root.querySelectorAll("button[data-map-kind]")) {
      button.setAttribute("aria-pressed", String(button.dataset.mapKind === kind));
    }
    showMap();
  }

  for (const button of root.querySelectorAll("button[data-view]")) {
    button.addEventListener("click", () => setView(button.dataset.view));
  }
  for (const button of root.querySelectorAll("button[data-map-kind]")) {
    button.addEventListener("click", () => setMapKind(button.dataset.mapKind));
  }
  for (const input of [controls.swipe, controls.opacity, controls.heatOpacity]) {
    input.addEventListener("input", applySliders);
  }
  controls.zoom.addEventListener("change", layout);

  // Pressing or dragging on the swipe view moves its line there.
  const swipeStage = root.querySelector("[data-view-panel=swipe] .stage");
  function swipeTo(event) {
    const box = swipeStage.getBoundingClientRect();
    const percent = Math.round((100 * (event.clientX - box.left)) / box.width);
    controls.swipe.value = String(Math.min(100, Math.max(0, percent)));
    applySliders();
  }
  swipeStage.addEventListener("pointerdown", (event) => {
    swipeStage.setPointerCapture(event.pointerId);
    swipeTo(event);
  });
  swipeStage.addEventListener("pointermove", (event) => {
    if (swipeStage.hasPointerCapture(event.pointerId)) swipeTo(event);
  });

  setView(view);
  applySliders();

  return {
    /**
     * `next`: {name, referenceUrl, candidateUrl, width, height, maps: {kind: Promise<url>}}
     * with `width` x `height` the compared size.
     */
    show(next) {
      pair = next;
      for (const img of root.querySelectorAll("img[data-image=reference]")) {
        img.src = next.referenceUrl;
        img.alt = "Reference";
      }
      for (const img of root.querySelectorAll("img[data-image=candidate]")) {
        img.src = next.candidateUrl;
        img.alt = `Candidate ${next.name}`;
      }
      mapImage.removeAttribute("src");
      delete mapImage.dataset.mapKind;
      layout();
      showMap();
    },
  };
}
