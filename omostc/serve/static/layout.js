// The Layout view: the scene's regions as boxes on an SVG at the image's aspect ratio.
// Boxes are drawn in depth order (farthest first, as rendering layers them); the selected one
// can be dragged and resized with pointer events. Geometry is in grid cells (0..90).

const SVG = "http://www.w3.org/2000/svg";
const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

/** The box after moving (mode "move") or dragging one edge/corner handle by (dx, dy) cells. */
export function dragBox(start, mode, dx, dy, grid) {
  let { x, y, w, h } = start;
  let left = x, top = y, right = x + w, bottom = y + h;
  if (mode === "move") {
    const nx = clamp(Math.round(x + dx), 0, grid - w);
    const ny = clamp(Math.round(y + dy), 0, grid - h);
    return { x: nx, y: ny, w, h };
  }
  if (mode.includes("w")) left = clamp(Math.round(left + dx), 0, right - 1);
  if (mode.includes("e")) right = clamp(Math.round(right + dx), left + 1, grid);
  if (mode.includes("n")) top = clamp(Math.round(top + dy), 0, bottom - 1);
  if (mode.includes("s")) bottom = clamp(Math.round(bottom + dy), top + 1, grid);
  return { x: left, y: top, w: right - left, h: bottom - top };
}

export class LayoutView {
  /**
   * @param {SVGSVGElement} svg
   * @param {{onSelect: (i: number|null) => void, onBoxChange: (i: number, box: object) => void}} callbacks
   */
  constructor(svg, callbacks) {
    this.svg = svg;
    this.callbacks = callbacks;
    this.layout = null;
    this.selected = null;
    this.drag = null;
    this.pending = null; // a layout that arrived during a drag
    svg.addEventListener("pointerdown", (e) => this.pointerDown(e));
    svg.addEventListener("pointermove", (e) => this.pointerMove(e));
    svg.addEventListener("pointerup", (e) => this.pointerUp(e));
    svg.addEventListener("pointercancel", () => this.cancel());
    svg.addEventListener("lostpointercapture", () => this.drag && this.pointerUp(null));
  }

  /** Draw a layout (the server's: {width, height, grid, regions, global}); `selected`: region index. */
  draw(layout, selected = this.selected) {
    if (this.drag) { // a drag in progress keeps its picture: the newer one is drawn on release
      this.pending = { layout, selected };
      return;
    }
    this.pending = null;
    this.layout = layout;
    this.selected = selected;
    const svg = this.svg;
    svg.replaceChildren();
    if (!layout) {
      svg.setAttribute("viewBox", "0 0 90 90");
      return;
    }
    const { width, height } = layout;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.style.aspectRatio = `${width} / ${height}`;
    el("rect", { x: 0, y: 0, width, height, fill: layout.global?.color || "#444", class: "global-bg",
      "data-testid": "layout-global" }, svg);
    const regions = [...layout.regions].sort((a, b) => a.order - b.order);
    for (const region of regions) this.drawRegion(region);
    if (selected !== null) this.drawSelection();
  }

  sx(cells) { return (cells * this.layout.width) / this.layout.grid; }
  sy(cells) { return (cells * this.layout.height) / this.layout.grid; }

  drawRegion(region) {
    const g = el("g", { class: `region ${region.snapped === false ? "free" : "vocabulary"}`,
      "data-index": region.index, "data-testid": `region-box-${region.index}`,
      "data-color": region.color_name || "" }, this.svg);
    if (region.index === this.selected) g.classList.add("selected");
    el("rect", { class: "box", x: this.sx(region.x), y: this.sy(region.y), width: this.sx(region.w),
      height: this.sy(region.h), fill: region.color, stroke: region.color }, g);
    const size = Math.max(12, Math.round(Math.min(this.layout.width, this.layout.height) / 30));
    const text = el("text", { x: this.sx(region.x) + size * 0.4, y: this.sy(region.y) + size * 1.2,
      "font-size": size }, g);
    text.textContent = region.label;
    const title = el("title", {}, g);
    const placed = region.snapped === false ? "a free box" : "location, offset and area";
    title.textContent = `${region.label}: ${placed}, distance ${region.distance_to_viewer}`;
  }

  regionAt(index) {
    return this.layout?.regions.find((r) => r.index === index) || null;
  }

  /** The selected box's outline and resize handles, above every region so it can always be
   * grabbed; a click on it without a drag selects the region beneath instead. */
  drawSelection(box = this.regionAt(this.selected)) {
    this.svg.querySelectorAll(".selection, .handle").forEach((h) => h.remove());
    if (!box) return;
    el("rect", { class: "selection", "data-testid": "selection", x: this.sx(box.x), y: this.sy(box.y),
      width: this.sx(box.w), height: this.sy(box.h) }, this.svg);
    const r = Math.max(6, Math.min(this.layout.width, this.layout.height) / 90);
    const xs = { w: box.x, e: box.x + box.w, c: box.x + box.w / 2 };
    const ys = { n: box.y, s: box.y + box.h, c: box.y + box.h / 2 };
    for (const name of HANDLES) {
      const hx = name.includes("w") ? xs.w : name.includes("e") ? xs.e : xs.c;
      const hy = name.includes("n") ? ys.n : name.includes("s") ? ys.s : ys.c;
      el("rect", { class: "handle", "data-handle": name, "data-testid": `handle-${name}`,
        x: this.sx(hx) - r, y: this.sy(hy) - r, width: 2 * r, height: 2 * r,
        style: `cursor: ${name}-resize` }, this.svg);
    }
  }

  /** Client (screen) coordinates to grid cells. */
  toGrid(event) {
    const ctm = this.svg.getScreenCTM();
    const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(ctm.inverse());
    return { x: (p.x * this.layout.grid) / this.layout.width, y: (p.y * this.layout.grid) / this.layout.height };
  }

  pointerDown(event) {
    if (!this.layout || event.button !== 0) return;
    const handle = event.target.closest(".handle");
    const group = event.target.closest(".region");
    const onSelection = event.target.classList.contains("selection");
    let index = this.selected;
    if (!handle && !onSelection) {
      index = group ? Number(group.dataset.index) : null;
      if (index !== this.selected) {
        this.selected = index;
        this.callbacks.onSelect(index);
      }
    }
    if (index === null) return;
    const region = this.regionAt(index);
    if (!region) return;
    event.preventDefault();
    this.svg.setPointerCapture(event.pointerId);
    this.drag = { index, mode: handle ? handle.dataset.handle : "move", origin: this.toGrid(event),
      start: { x: region.x, y: region.y, w: region.w, h: region.h }, box: null,
      clickThrough: onSelection ? { x: event.clientX, y: event.clientY } : null };
  }

  pointerMove(event) {
    if (!this.drag) return;
    const p = this.toGrid(event);
    const { origin, start, mode, index } = this.drag;
    const box = dragBox(start, mode, p.x - origin.x, p.y - origin.y, this.layout.grid);
    this.drag.box = box;
    const rect = this.svg.querySelector(`[data-index="${index}"] rect.box`);
    const label = this.svg.querySelector(`[data-index="${index}"] text`);
    const size = Number(label.getAttribute("font-size"));
    rect.setAttribute("x", this.sx(box.x));
    rect.setAttribute("y", this.sy(box.y));
    rect.setAttribute("width", this.sx(box.w));
    rect.setAttribute("height", this.sy(box.h));
    label.setAttribute("x", this.sx(box.x) + size * 0.4);
    label.setAttribute("y", this.sy(box.y) + size * 1.2);
    this.drawSelection(box);
  }

  pointerUp() {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    const pending = this.pending;
    this.pending = null;
    const { start, box } = drag;
    if (!box || (box.x === start.x && box.y === start.y && box.w === start.w && box.h === start.h)) {
      if (pending) this.draw(pending.layout, pending.selected);
      if (drag.clickThrough) this.selectBeneath(drag.clickThrough);
      return;
    }
    this.callbacks.onBoxChange(drag.index, box);
  }

  /** A click on the selected box: select the topmost other region under the pointer, if any. */
  selectBeneath({ x, y }) {
    const groups = document.elementsFromPoint(x, y).map((node) => node.closest?.(".region")).filter(Boolean);
    const other = groups.find((g) => Number(g.dataset.index) !== this.selected);
    if (!other) return;
    this.selected = Number(other.dataset.index);
    this.callbacks.onSelect(this.selected);
  }

  cancel() {
    if (this.drag) {
      const { layout, selected } = this.pending || { layout: this.layout, selected: this.selected };
      this.drag = null;
      this.draw(layout, selected);
    }
  }

  /** Arrow keys nudge the selected box a cell (Shift: resize), kept as a free box: the keyboard
   * is for exact placement, so it does not snap. Drawn at once, so fast presses add up. */
  nudge(key, resize) {
    const region = this.regionAt(this.selected);
    if (!region) return false;
    const d = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
    if (!d) return false;
    const start = { x: region.x, y: region.y, w: region.w, h: region.h };
    const box = dragBox(start, resize ? "se" : "move", d[0], d[1], this.layout.grid);
    if (box.x !== start.x || box.y !== start.y || box.w !== start.w || box.h !== start.h) {
      Object.assign(region, box);
      this.draw(this.layout);
      this.callbacks.onBoxChange(this.selected, box, { snap: false });
    }
    return true;
  }
}
