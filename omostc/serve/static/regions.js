// The region list (spec order; select, add, delete, reorder) and the form that edits one
// region's fields, or the global description, with the allowed values from /api/vocabulary.

const PLACEMENT = ["location", "offset", "area"];
const DEFAULT_PLACEMENT = { location: "in the center", offset: "no offset", area: "a medium-sized square area" };
const LONG_TEXT = new Set(["description", "detailed_descriptions", "tags", "atmosphere", "style", "quality_meta"]);

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** A region that is placed by a box instead of location/offset/area, or the other way round. */
export function withBox(region, box) {
  const out = { ...region, box: { ...box } };
  for (const key of PLACEMENT) delete out[key];
  return reorderKeys(out);
}

export function withPlacement(region, placement) {
  const out = { ...region, ...placement };
  delete out.box;
  return reorderKeys(out);
}

// keep the spec's key order so the canonical writer's output diffs well either way
const ORDER = ["name", "location", "offset", "area", "box", "distance_to_viewer", "description",
  "detailed_descriptions", "tags", "atmosphere", "style", "quality_meta", "color", "feather", "weight"];
function reorderKeys(region) {
  const out = {};
  for (const key of ORDER) if (key in region) out[key] = region[key];
  for (const key of Object.keys(region)) if (!(key in out)) out[key] = region[key];
  return out;
}

export function newRegion(scene, vocab) {
  const distances = scene.regions.map((r) => r.distance_to_viewer);
  const nearest = distances.length ? Math.min(...distances) : 2;
  const colors = Object.keys(vocab.colors);
  const used = new Set(scene.regions.map((r) => r.color));
  const color = ["orange", "teal", "crimson", "gold", "orchid", "seagreen", "royalblue", "coral"]
    .find((c) => !used.has(c) && colors.includes(c)) || colors[0];
  return {
    ...DEFAULT_PLACEMENT,
    distance_to_viewer: Math.max(0.5, Math.round((nearest / 2) * 10) / 10),
    description: "A new region.",
    detailed_descriptions: [],
    tags: "",
    atmosphere: "",
    style: "",
    quality_meta: "",
    color,
  };
}

/** A field of /api/vocabulary with its type, choices and bounds, from the field or its JSON Schema. */
export function describe(field) {
  const schema = field.schema || {};
  return {
    ...field,
    type: field.type || schema.type || "string",
    choices: field.choices || schema.enum || null,
    minimum: field.minimum ?? schema.minimum ?? schema.exclusiveMinimum,
    maximum: field.maximum ?? schema.maximum,
  };
}

export class RegionPanel {
  /**
   * @param {HTMLElement} list  the <ol> of regions
   * @param {HTMLFormElement} form
   * @param {{select, change, changeGlobal, remove, move}} actions
   */
  constructor(list, form, actions) {
    this.list = list;
    this.form = form;
    this.actions = actions;
    this.vocab = null;
  }

  drawList(scene, layout, selected) {
    this.list.replaceChildren();
    if (!scene) return;
    const byIndex = new Map((layout?.regions || []).map((r) => [r.index, r]));
    const globalItem = h("li", { "data-testid": "region-item-global", "aria-selected": selected === "global",
      onclick: () => this.actions.select("global") },
    h("span", { class: "swatch", style: `background:${layout?.global?.color || "#888"}` }),
    h("span", { class: "label" }, "Whole image (global)"));
    this.list.append(globalItem);
    scene.regions.forEach((region, i) => {
      const drawn = byIndex.get(i);
      const label = drawn?.label || region.name || region.description;
      const stop = (fn) => (e) => { e.stopPropagation(); fn(); };
      this.list.append(h("li", { "data-testid": `region-item-${i}`, "aria-selected": selected === i,
        onclick: () => this.actions.select(i) },
      h("span", { class: "swatch", style: `background:${drawn?.color || "#888"}` }),
      h("span", { class: "label", title: label }, `${i + 1}. ${label}`),
      h("button", { type: "button", title: "Earlier in the spec", "data-testid": `region-up-${i}`,
        disabled: i === 0, onclick: stop(() => this.actions.move(i, i - 1)) }, "↑"),
      h("button", { type: "button", title: "Later in the spec", "data-testid": `region-down-${i}`,
        disabled: i === scene.regions.length - 1, onclick: stop(() => this.actions.move(i, i + 1)) }, "↓"),
      h("button", { type: "button", title: "Delete this region", "data-testid": `region-delete-${i}`,
        onclick: stop(() => this.actions.remove(i)) }, "✕")));
    });
  }

  /** Build the form for region `index` (or "global"); `rect`: the region's drawn box. */
  drawForm(scene, selected, rect) {
    const form = this.form;
    form.replaceChildren();
    if (!scene || selected === null || selected === undefined || !this.vocab) {
      form.hidden = true;
      return;
    }
    form.hidden = false;
    const isGlobal = selected === "global";
    const data = isGlobal ? scene.global : scene.regions[selected];
    if (!data) {
      form.hidden = true;
      return;
    }
    const fields = isGlobal ? this.vocab.global_fields : this.vocab.region_fields;
    form.dataset.region = String(selected);
    form.append(h("h3", { class: "wide" }, isGlobal ? "Whole image" : `Region ${selected + 1}`));
    const commit = (next) => (isGlobal ? this.actions.changeGlobal(next) : this.actions.change(selected, next));
    for (const field of fields) {
      if (field.name === "box") {
        form.append(...this.boxField(data, rect, commit));
        continue;
      }
      form.append(h("label", { for: `f-${field.name}`, title: field.help || "" }, field.name),
        this.input(field, data, commit, rect));
    }
  }

  input(raw, data, commit, rect) {
    const field = describe(raw);
    const name = field.name;
    const id = `f-${name}`;
    const testid = `field-${name}`;
    const value = data[name];
    const set = (v) => {
      const next = { ...data };
      if (v === undefined) delete next[name];
      else next[name] = v;
      return next;
    };
    if (field.choices) {
      const placement = PLACEMENT.includes(name);
      const empty = placement ? "— free box —" : field.required ? null : "—";
      const select = h("select", { id, "data-testid": testid, title: field.help || "" },
        empty === null ? null : h("option", { value: "" }, empty),
        ...field.choices.map((c) => h("option", { value: c, selected: c === value },
          name === "color" ? `■ ${c}` : c)));
      if (name === "color") {
        for (const option of select.options) if (option.value) option.style.color = this.vocab.colors[option.value];
      }
      select.addEventListener("change", () => {
        const v = select.value || undefined;
        if (!placement) return commit(set(v));
        if (v === undefined) return commit(withBox(data, rect || { x: 30, y: 30, w: 30, h: 30 }));
        const placed = {};
        for (const key of PLACEMENT) placed[key] = data[key] || DEFAULT_PLACEMENT[key];
        placed[name] = v;
        return commit(withPlacement(data, placed));
      });
      return select;
    }
    if (field.type === "array") {
      const area = h("textarea", { id, "data-testid": testid, rows: 4, title: "One sub-prompt per line" });
      area.value = (value || []).join("\n");
      area.addEventListener("change", () => commit(set(area.value.split("\n").map((s) => s.trim()).filter(Boolean))));
      return area;
    }
    if (field.type === "number" || field.type === "integer") {
      const input = h("input", { id, type: "number", step: field.type === "integer" ? 1 : "any",
        min: field.minimum, max: field.maximum, "data-testid": testid, placeholder: field.required ? "" : "default" });
      input.value = value ?? "";
      input.addEventListener("change", () => {
        if (input.value === "") return commit(field.required ? data : set(undefined));
        const n = Number(input.value);
        return commit(set(Number.isFinite(n) ? n : input.value));
      });
      return input;
    }
    const long = LONG_TEXT.has(name);
    const input = long ? h("textarea", { id, rows: name === "description" ? 2 : 1, "data-testid": testid })
      : h("input", { id, "data-testid": testid, placeholder: field.required ? "" : "optional" });
    input.value = value ?? "";
    input.addEventListener("change", () => commit(set(input.value === "" && !field.required ? undefined : input.value)));
    return input;
  }

  boxField(data, rect, commit) {
    const box = data.box || rect || { x: 0, y: 0, w: 90, h: 90 };
    const inputs = ["x", "y", "w", "h"].map((k) => {
      const input = h("input", { type: "number", min: k === "w" || k === "h" ? 1 : 0, max: 90, step: 1,
        "data-testid": `field-box-${k}`, title: `box ${k} (grid cells)` });
      input.value = box[k];
      return input;
    });
    const change = () => {
      const [x, y, w, hh] = inputs.map((i) => Math.round(Number(i.value)));
      commit(withBox(data, { x, y, w, h: hh }));
    };
    inputs.forEach((i) => i.addEventListener("change", change));
    const title = data.box ? "box (free)" : "box (from the vocabulary)";
    return [h("label", { title: "x, y, w, h on the 90 x 90 grid" }, title),
      h("div", { class: "box-fields" }, ...inputs)];
  }
}
