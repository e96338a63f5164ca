// Choosing files: the reference, one or more candidates and an optional mask, by the file
// pickers or by dropping files on them.

const urls = new WeakMap(); // File -> object URL, made once per file and kept for the page's life

/** An object URL showing `file` (blob:, which the page's CSP allows for images). */
export function fileUrl(file) {
  if (!urls.has(file)) urls.set(file, URL.createObjectURL(file));
  return urls.get(file);
}

/** By name, in code-unit order: the order `simscore compare REF FOLDER` scores a folder in. */
export function byName(files) {
  return [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function showReference(zone, input) {
  const img = zone.querySelector(".preview");
  const file = input.files[0];
  img.hidden = !file;
  if (!file) {
    img.removeAttribute("src");
    return;
  }
  img.src = fileUrl(file);
  img.alt = `reference preview: ${file.name}`;
}

function showCandidates(zone, input) {
  const img = zone.querySelector(".preview");
  const list = zone.querySelector(".file-list");
  const files = byName(input.files);
  img.hidden = files.length !== 1;
  if (files.length === 1) {
    img.src = fileUrl(files[0]);
    img.alt = `candidate preview: ${files[0].name}`;
  } else {
    img.removeAttribute("src");
  }
  list.replaceChildren(
    ...(files.length > 1 ? files : []).map((file) => {
      const item = document.createElement("li");
      item.dataset.verbatim = "";
      item.textContent = file.name;
      return item;
    }),
  );
  list.hidden = files.length < 2;
  zone.querySelector(".count").textContent = files.length > 1
    ? `${files.length} candidates: the results table lists them all.`
    : "";
}

const SHOW = { reference: showReference, candidate: showCandidates, mask: () => {} };

/** Wire the drop zone `zone` (`[data-drop-for=NAME]`) to its file input `form.elements[NAME]`. */
export function setUpPicker(form, zone) {
  const name = zone.dataset.dropFor;
  const input = form.elements[name];
  const show = () => SHOW[name](zone, input);
  input.addEventListener("change", show);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const dropped = [...((event.dataTransfer && event.dataTransfer.files) || [])];
    if (dropped.length === 0) return;
    const picked = new DataTransfer();
    for (const file of input.multiple ? dropped : dropped.slice(0, 1)) picked.items.add(file);
    input.files = picked.files;
    show();
  });
}
