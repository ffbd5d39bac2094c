// cvstyle's page: pick a photo and a style, send them to POST /api/stylize, show the result.
"use strict";

const $ = (id) => document.getElementById(id);
const SIZES = [256, 512, 768, 1024, 1536, 2048];
const PREFERRED_SIZE = 1024; // sharp on a phone screen, a few seconds on a CPU
const TIMEOUT_MS = 5 * 60 * 1000;

const state = { photo: null, settings: null, originalUrl: null, resultUrl: null, busy: false };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function formatBytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

// The server's message for a failed request, whatever shape the body has.
function describeFailure(status, body, retryAfter) {
  let detail = "";
  try {
    detail = JSON.parse(body).detail || "";
  } catch (_) {
    detail = body.slice(0, 200);
  }
  if (status === 503) {
    return `The server is busy with other photos. Please try again in ${retryAfter || "a few"} seconds.`;
  }
  return detail || `The server answered ${status}.`;
}

function buildSizes() {
  const select = $("size");
  const max = state.settings.max_size;
  const sizes = SIZES.filter((size) => size <= max);
  for (const size of sizes) select.add(new Option(`Up to ${size} px`, String(size)));
  select.add(new Option(`Full size (up to ${max} px)`, ""));
  const preferred = sizes.filter((size) => size <= PREFERRED_SIZE).pop();
  select.value = preferred ? String(preferred) : "";
}

// A family says which of two same-titled styles a tile is (La Muse exists in two).
const FAMILY_LABELS = { builtin: "built-in", eccv16: "eccv16 family", instance_norm: "instance_norm family" };

// A new element with its class, properties and children.
function element(tag, properties = {}, ...children) {
  const made = Object.assign(document.createElement(tag), properties);
  made.append(...children);
  return made;
}

function styleTile(model) {
  const radio = element("input", { type: "radio", name: "style", value: model.name });
  radio.addEventListener("change", updateButton);
  const img = element("img", {
    src: model.preview, alt: `${model.title}: the style on a sample photo`, loading: "lazy",
  });
  img.addEventListener("error", () => img.remove()); // the box's own colour stays
  const preview = element("div", { className: "preview" }, img);
  return element("label", { className: "style", title: model.title }, radio, preview, tileText(model));
}

function tileText(model) {
  const family = FAMILY_LABELS[model.family] || model.family;
  return element(
    "span", { className: "text" },
    element("span", { className: "name", textContent: model.title }),
    element("small", { className: "family", textContent: family }),
  );
}

// Not downloaded: no radio, and the command that an administrator runs to add it.
function unavailableTile(model) {
  const command = element("code", { textContent: `cvstyle fetch-models ${model.name}` });
  return element("li", { className: "style missing" }, tileText(model), command);
}

function renderGallery(models) {
  const gallery = $("gallery");
  gallery.replaceChildren();
  if (!models.length) {
    gallery.textContent = "This server offers no styles.";
    return;
  }
  // Styles that can be used first; the rest folded away, each with its fetch command.
  const missing = models.filter((model) => !model.available);
  for (const model of models.filter((model) => model.available)) gallery.append(styleTile(model));
  $("unavailable").replaceChildren(...missing.map(unavailableTile));
  $("more-styles-summary").textContent = `${missing.length} more styles, not downloaded on this server`;
  $("more-styles").hidden = !missing.length;
  const first = gallery.querySelector("input");
  if (first) first.checked = true;
  updateButton();
}

function selectedStyle() {
  const checked = document.querySelector('input[name="style"]:checked');
  return checked ? checked.value : null;
}

function updateButton() {
  $("go").disabled = state.busy || !state.photo || !selectedStyle();
}

function choosePhoto(file) {
  showError("");
  if (!file) return;
  const limit = state.settings ? state.settings.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(`${file.name} is ${formatBytes(file.size)}; this server takes photos up to ${formatBytes(limit)}.`);
    return;
  }
  state.photo = file;
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  $("original-figure").hidden = true; // shown once the browser can draw it
  $("original").src = state.originalUrl;
  $("drop-text").textContent = file.name;
  $("drop-hint").textContent = `${formatBytes(file.size)}. Choose or drop another to change it.`;
  clearResult();
  $("compare").hidden = false;
  updateButton();
}

// No empty or stale picture stays on screen: the figure is hidden until a result loads.
function clearResult() {
  $("result-figure").hidden = true;
  $("result").removeAttribute("src");
  $("download").hidden = true;
  $("result-caption").textContent = "Result";
}

function setProgress(message, fraction) {
  $("progress").hidden = message === null;
  $("status").textContent = message || "";
  const bar = $("bar");
  if (fraction === undefined) bar.removeAttribute("value"); // indeterminate
  else bar.value = fraction;
}

// The chosen size, but never larger than the photo: the page scales down, never up.
// "" lets the server use the photo's own size (up to its maximum).
function processingSize() {
  const chosen = $("size").value;
  const original = $("original");
  const longer = Math.max(original.naturalWidth, original.naturalHeight);
  return chosen && longer ? String(Math.min(Number(chosen), longer)) : chosen;
}

function paint() {
  const style = selectedStyle();
  if (!state.photo || !style) return;
  showError("");
  state.busy = true;
  updateButton();
  const form = new FormData();
  form.append("image", state.photo, state.photo.name);
  form.append("model", style);
  form.append("size", processingSize());
  form.append("preserve_colors", String($("preserve").checked));
  form.append("strength", String(Number($("strength").value) / 100));

  const started = performance.now();
  let ticker = null;
  const finish = () => {
    clearInterval(ticker);
    state.busy = false;
    setProgress(null);
    updateButton();
  };
  const xhr = new XMLHttpRequest(); // unlike fetch, it reports upload progress
  xhr.open("POST", "/api/stylize");
  xhr.responseType = "blob";
  xhr.timeout = TIMEOUT_MS;
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) setProgress("Uploading\u2026", event.loaded / event.total);
  });
  xhr.upload.addEventListener("load", () => {
    const tick = () => {
      const seconds = Math.round((performance.now() - started) / 1000);
      setProgress(`Painting\u2026 ${seconds} s`);
    };
    tick();
    ticker = setInterval(tick, 1000);
  });
  xhr.addEventListener("load", async () => {
    finish();
    clearResult();
    if (xhr.status === 200) {
      showResult(xhr.response, xhr.getResponseHeader("Content-Disposition"), started);
    } else {
      const body = await xhr.response.text();
      showError(describeFailure(xhr.status, body, xhr.getResponseHeader("Retry-After")));
    }
  });
  xhr.addEventListener("error", () => {
    finish();
    showError("Could not reach the server. Check the connection and try again.");
  });
  xhr.addEventListener("timeout", () => {
    finish();
    showError("The server took too long. Try a smaller size.");
  });
  setProgress("Uploading\u2026", 0);
  xhr.send(form);
}

// The download name the server chose (filename* carries non-ASCII names).
function downloadName(disposition) {
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
  if (encoded) return decodeURIComponent(encoded[1]);
  const plain = /filename="([^"]+)"/i.exec(disposition || "");
  return plain ? plain[1] : "painting.jpg";
}

function showResult(blob, disposition, started) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const result = $("result");
  result.src = state.resultUrl;
  const link = $("download");
  link.href = state.resultUrl;
  link.download = downloadName(disposition);
  link.hidden = false;
  result.addEventListener("load", () => {
    const elapsed = (performance.now() - started) / 1000;
    const seconds = elapsed.toFixed(elapsed < 1 ? 2 : 1);
    $("result-caption").textContent =
      `${result.naturalWidth}\u00d7${result.naturalHeight}, ${formatBytes(blob.size)}, ${seconds} s`;
    $("result-figure").hidden = false;
    $("result-figure").scrollIntoView({ block: "start" }); // below the fold on most screens
  }, { once: true });
}

function setUpDrop() {
  const drop = $("drop");
  // Dropping a file anywhere else must not make the browser leave the page to open it.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }
  drop.addEventListener("dragenter", () => drop.classList.add("over"));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    drop.classList.remove("over");
    choosePhoto(event.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (event) => choosePhoto(event.target.files[0]));
  $("original").addEventListener("load", () => { $("original-figure").hidden = false; });
  // Not a picture the browser can draw (the server will say what is wrong with it).
  $("original").addEventListener("error", () => { $("original-figure").hidden = true; });
}

async function start() {
  setUpDrop();
  $("go").addEventListener("click", paint);
  $("strength").addEventListener("input", (event) => {
    $("strength-value").textContent = `${event.target.value} %`;
  });
  try {
    state.settings = await getJSON("/api/settings");
    buildSizes();
    $("drop-hint").textContent += `, up to ${formatBytes(state.settings.max_upload_bytes)}`;
    renderGallery(await getJSON("/api/models"));
  } catch (error) {
    $("gallery").textContent = "";
    showError(`Could not load the list of styles (${error.message}). Reload the page to try again.`);
  }
}

start();
