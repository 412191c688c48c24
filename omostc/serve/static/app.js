// omostc serve: one scene, three views. The scene dict is the single state: the Layout and the
// region form edit it, the Spec view shows its canonical YAML (written by the server), the Chat
// replaces it with a compiled answer; typing YAML validates it back into a scene.

import * as api from "./api.js";
import { ChatPanel } from "./chat.js";
import { LayoutView } from "./layout.js";
import { newRegion, RegionPanel, withBox, withPlacement } from "./regions.js";
import { RenderPanel } from "./render.js";
import { diagnosticText, SpecEditor } from "./spec.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

const state = {
  path: null,        // the spec's path in DIR
  scene: null,       // the scene dict (null while the YAML does not validate)
  yaml: "",          // the text shown in the Spec view
  saved: null,       // the text last loaded or saved, for the unsaved mark
  layout: null,      // the server's drawing of the scene
  broken: false,     // the last layout/form edit broke the schema: the text is behind the scene
  selected: null,    // a region index, "global" or null
  vocab: null,
  generation: 0,     // bumped by every edit: answers to older requests are dropped
};

function status(text, error = false) {
  const node = $("status");
  node.textContent = text;
  node.classList.toggle("error", error);
  node.title = text;
}

function fail(err) {
  const details = (err.diagnostics || []).map(diagnosticText);
  status([err.message, ...details].join(" — "), true);
}

const layoutView = new LayoutView($("layout-svg"), {
  onSelect: (index) => select(index),
  onBoxChange: (index, box, options) => boxChanged(index, box, options).catch(fail),
});

const regionPanel = new RegionPanel($("region-list"), $("region-form"), {
  select: (index) => select(index),
  change: (index, region) => editRegions((regions) => { regions[index] = region; }),
  changeGlobal: (global) => edit({ ...state.scene, global }),
  remove: (index) => {
    if (state.selected === index) state.selected = null;
    else if (typeof state.selected === "number" && state.selected > index) state.selected -= 1;
    editRegions((regions) => { regions.splice(index, 1); });
  },
  move: (from, to) => {
    if (state.selected === from) state.selected = to;
    else if (state.selected === to) state.selected = from;
    editRegions((regions) => { const [r] = regions.splice(from, 1); regions.splice(to, 0, r); });
  },
});

const specEditor = new SpecEditor($("spec"), { validate: (yaml) => typed(yaml).catch(fail) });

const renderPanel = new RenderPanel($("render"), {
  request: () => (state.scene ? { path: state.path || undefined, yaml: state.yaml } : null),
  status,
});

const chatPanel = new ChatPanel($("chat"), {
  scene: () => state.scene,
  path: () => state.path,
  snapshot: () => ({ yaml: state.yaml, scene: state.broken ? null : state.scene }),
  restore: (snapshot) => typed(snapshot.yaml, { setText: true }).catch(fail),
  answered: (data) => edit(data.scene).catch(fail),
  status,
});

// --- drawing ------------------------------------------------------------------------------

function rectOf(index) {
  const r = state.layout?.regions.find((region) => region.index === index);
  return r ? { x: r.x, y: r.y, w: r.w, h: r.h } : null;
}

function drawScene({ form = true } = {}) {
  const { scene, layout } = state;
  layoutView.draw(layout, typeof state.selected === "number" ? state.selected : null);
  $("layout-size").textContent = layout ? `${layout.width} × ${layout.height}` : "";
  $("layout").classList.toggle("stale", !scene);
  regionPanel.drawList(scene, layout, state.selected);
  if (form) regionPanel.drawForm(scene, state.selected, rectOf(state.selected));
  const dirty = state.path !== null && state.yaml !== state.saved;
  $("dirty").hidden = !dirty;
  $("save").disabled = !state.path || !scene || state.broken || !dirty;
  renderPanel.enable(Boolean(scene) && !state.broken);
  $("region-add").disabled = !scene;
}

function select(index) {
  state.selected = index;
  drawScene();
}

// --- edits --------------------------------------------------------------------------------

/** A new scene dict from the layout, the form or the chat: the server writes its YAML. */
async function edit(scene, { form = false } = {}) {
  const generation = ++state.generation;
  state.scene = scene;
  const result = await api.sceneToYaml(scene, state.path || undefined);
  if (generation !== state.generation) return;
  state.broken = !result.ok;
  if (!result.ok) {
    specEditor.show(result.diagnostics, false);
    status("the edit breaks the spec: see the Spec view", true);
    drawScene({ form });
    return;
  }
  state.scene = result.scene;
  state.yaml = result.yaml;
  state.layout = result.layout;
  specEditor.set(result.yaml, result.diagnostics);
  drawScene({ form });
}

function editRegions(change) {
  const regions = state.scene.regions.map((r) => ({ ...r }));
  change(regions);
  return edit({ ...state.scene, regions }, { form: true }).catch(fail);
}

/** A box dragged or resized on the layout: snap it to the vocabulary, or keep it free. */
async function boxChanged(index, box, { snap = true } = {}) {
  const snapped = snap ? await api.snap(box) : { snapped: false, box };
  const region = state.scene.regions[index];
  const next = snapped.snapped
    ? withPlacement(region, { location: snapped.location, offset: snapped.offset, area: snapped.area })
    : withBox(region, snapped.box);
  status(snapped.snapped ? `snapped to ${snapped.location}, ${snapped.offset}, ${snapped.area}`
    : `free box ${snapped.box.x}, ${snapped.box.y}, ${snapped.box.w} × ${snapped.box.h}`);
  await editRegions((regions) => { regions[index] = next; });
}

/** The YAML was typed (or restored): validate it into the scene. */
async function typed(yaml, { setText = false } = {}) {
  const generation = ++state.generation;
  state.yaml = yaml;
  state.broken = false;
  if (setText) specEditor.set(yaml);
  const result = await api.validate(yaml, state.path || undefined);
  if (generation !== state.generation) return;
  specEditor.show(result.diagnostics, result.ok);
  state.scene = result.ok ? result.scene : null;
  if (result.layout) state.layout = result.layout;
  if (state.scene && typeof state.selected === "number" && state.selected >= state.scene.regions.length) {
    state.selected = null;
  }
  drawScene({ form: !document.activeElement?.closest?.('[data-testid="region-form"]') });
}

// --- files --------------------------------------------------------------------------------

async function listFiles() {
  const { specs } = await api.listSpecs();
  const list = $("file-list");
  list.replaceChildren(...specs.map((path) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = path;
    button.title = path;
    button.dataset.testid = "file-item";
    button.dataset.path = path;
    if (path === state.path) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => open(path).catch(fail));
    li.append(button);
    return li;
  }));
  return specs;
}

function leaveOk() {
  return state.path === null || state.yaml === state.saved || confirm(`Discard the unsaved changes to ${state.path}?`);
}

async function open(path) {
  if (path === state.path || !leaveOk()) return;
  const result = await api.loadSpec(path);
  state.generation++;
  state.path = result.path;
  state.yaml = result.yaml ?? ""; // null: the file is not text (not UTF-8, too large); the diagnostics say so
  state.saved = state.yaml;
  state.scene = result.scene;
  state.layout = result.layout;
  state.broken = false;
  state.selected = null;
  history.replaceState(null, "", `#${encodeURI(result.path)}`);
  $("current-file").textContent = result.path;
  document.title = `${result.path} · omostc serve`;
  specEditor.set(state.yaml, result.diagnostics || []);
  drawScene();
  chatPanel.reset(result.scene);
  renderPanel.clear();
  renderPanel.loadPast(result.path);
  document.querySelectorAll('[data-testid="file-item"]').forEach((b) => {
    if (b.dataset.path === result.path) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  });
  status(result.scene ? `opened ${result.path}` : `${result.path} does not validate: see the Spec view`, !result.scene);
}

async function save() {
  if (!state.path) return;
  if (specEditor.pending) await typed(specEditor.value); // flush the last keystrokes
  if (!state.scene || state.broken) {
    status("the spec has errors: fix them before saving", true);
    return;
  }
  const yaml = state.yaml;
  try {
    const result = await api.saveSpec(state.path, yaml);
    state.saved = result.yaml;
    if (state.yaml === yaml) state.yaml = result.yaml;
    status(`saved ${result.path}`);
    drawScene({ form: false });
    await listFiles();
  } catch (err) {
    if (err.diagnostics?.length) specEditor.show(err.diagnostics, false);
    fail(err);
  }
}

async function newFile(name) {
  let path = name.trim().replace(/^\/+/, "");
  if (!path) return;
  if (!/\.ya?ml$/i.test(path)) path += ".yaml";
  if (!leaveOk()) return;
  const scene = {
    version: 1,
    global: { description: "A new scene.", detailed_descriptions: [], tags: "", color: "lightgray" },
    regions: [],
  };
  state.path = path;
  state.saved = null;
  state.selected = "global";
  $("current-file").textContent = path;
  chatPanel.reset(null);
  renderPanel.clear();
  renderPanel.loadPast(null);
  await edit(scene, { form: true });
  status(`${path} is new: Save writes it`);
}

// --- start --------------------------------------------------------------------------------

$("save").addEventListener("click", () => save().catch(fail));
$("region-add").addEventListener("click", () => {
  const index = state.scene.regions.length;
  state.selected = index;
  editRegions((regions) => { regions.push(newRegion(state.scene, state.vocab)); });
});
$("new-file-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("new-file-name");
  newFile(input.value).then(() => { input.value = ""; }).catch(fail);
});
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "s") {
    e.preventDefault();
    save().catch(fail);
  } else if (e.key.startsWith("Arrow") && state.scene && !e.target.closest?.("input, textarea, select")) {
    if (layoutView.nudge(e.key, e.shiftKey)) e.preventDefault();
  }
});
window.addEventListener("beforeunload", (e) => {
  if (state.path && state.yaml !== state.saved) e.preventDefault();
});

async function start() {
  // a token in the address (`--host`) is now a cookie the server set: keep it out of the address bar
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname + location.hash);
  const [info, vocab] = await Promise.all([api.info(), api.vocabulary()]);
  state.vocab = vocab;
  regionPanel.vocab = vocab;
  if (info.llm?.model) $("chat-text").placeholder = `Ask ${info.llm.model} for a scene, or for a change…`;
  await renderPanel.loadProfiles();
  const specs = await listFiles();
  let wanted = "";
  try {
    wanted = decodeURI(location.hash.slice(1));
  } catch {
    wanted = ""; // a mangled address opens nothing
  }
  if (wanted && specs.includes(wanted)) await open(wanted);
  document.body.dataset.ready = "true";
  status(`${specs.length} spec(s) in ${info.dir}`);
}

start().catch(fail);
