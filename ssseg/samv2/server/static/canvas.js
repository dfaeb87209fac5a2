// The image view: draws a frame, its mask overlay, prompts and the box being dragged; turns mouse input into points
// and boxes in image pixel coordinates; zooms (wheel, at the cursor) and pans (middle or Alt drag).

import { cssColor } from "./overlay.js";

const DRAG_PIXELS = 5; // a press that moves less than this (screen px) is a click, not a box

export class Viewer {
  /** handlers: onPoint(x, y, label), onBox([x0, y0, x1, y1]), onHover(x, y | null) */
  constructor(canvas, handlers) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.handlers = handlers;
    this.image = null; // ImageBitmap or canvas
    this.width = 0;
    this.height = 0;
    this.overlay = null; // canvas of the image's size, or null
    this.extra = null; // a second overlay (segment everything), drawn under the objects
    this.prompts = []; // [{points: [[x, y]], labels: [], box, color, selected}]
    this.scale = 1;
    this.offsetX = 0;
    this.offsetY = 0;
    this.drag = null;
    this.pending = false;
    this.fitted = true;
    this.bind();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    this.resize();
  }

  bind() {
    const c = this.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("pointerdown", (e) => this.down(e));
    c.addEventListener("pointermove", (e) => this.move(e));
    c.addEventListener("pointerup", (e) => this.up(e));
    c.addEventListener("pointerleave", () => this.handlers.onHover?.(null));
    c.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const rect = this.canvas.parentElement.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(rect.width * dpr));
    this.canvas.height = Math.max(1, Math.round(rect.height * dpr));
    this.canvas.style.width = `${rect.width}px`;
    this.canvas.style.height = `${rect.height}px`;
    if (this.fitted) this.fit();
    this.draw();
  }

  /** Shows a new image; keeps the zoom when the size is unchanged (video frames). */
  setImage(image) {
    const resized = !this.image || image.width !== this.width || image.height !== this.height;
    this.image = image;
    this.width = image.width;
    this.height = image.height;
    if (resized) this.fit();
    this.draw();
  }

  clear() {
    this.image = null;
    this.overlay = null;
    this.extra = null;
    this.prompts = [];
    this.draw();
  }

  setLayers({ overlay, extra, prompts }) {
    if (overlay !== undefined) this.overlay = overlay;
    if (extra !== undefined) this.extra = extra;
    if (prompts !== undefined) this.prompts = prompts;
    this.draw();
  }

  /** Image pixels per screen pixel at the fitted zoom: how thick an outline must be to stay visible. */
  imagePixelsPerScreenPixel() {
    const dpr = window.devicePixelRatio || 1;
    return 1 / Math.max(1e-6, this.scale / dpr);
  }

  fit() {
    this.fitted = true;
    if (!this.width) return;
    const margin = 16 * (window.devicePixelRatio || 1);
    const w = Math.max(1, this.canvas.width - 2 * margin);
    const h = Math.max(1, this.canvas.height - 2 * margin);
    this.scale = Math.min(w / this.width, h / this.height);
    this.offsetX = (this.canvas.width - this.width * this.scale) / 2;
    this.offsetY = (this.canvas.height - this.height * this.scale) / 2;
    this.draw();
  }

  zoom(factor, cx = this.canvas.width / 2, cy = this.canvas.height / 2) {
    const scale = Math.min(64, Math.max(0.05, this.scale * factor));
    const real = scale / this.scale;
    this.offsetX = cx - (cx - this.offsetX) * real;
    this.offsetY = cy - (cy - this.offsetY) * real;
    this.scale = scale;
    this.fitted = false;
    this.draw();
  }

  /** Canvas (device pixel) coordinates of a mouse event. */
  devicePoint(e) {
    const rect = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    return [(e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr];
  }

  toImage([dx, dy]) {
    return [(dx - this.offsetX) / this.scale, (dy - this.offsetY) / this.scale];
  }

  inside([x, y]) {
    return x >= 0 && y >= 0 && x < this.width && y < this.height;
  }

  clamp([x, y]) {
    return [Math.min(this.width, Math.max(0, x)), Math.min(this.height, Math.max(0, y))];
  }

  down(e) {
    if (!this.image) return;
    this.canvas.setPointerCapture(e.pointerId);
    const at = this.devicePoint(e);
    const pan = e.button === 1 || (e.button === 0 && e.altKey);
    this.drag = { start: at, now: at, button: e.button, shift: e.shiftKey, pan, moved: false };
    if (pan) this.canvas.classList.add("panning");
    e.preventDefault();
  }

  move(e) {
    const at = this.devicePoint(e);
    if (this.image) {
      const p = this.toImage(at);
      this.handlers.onHover?.(this.inside(p) ? p : null);
    }
    const d = this.drag;
    if (!d) return;
    const dpr = window.devicePixelRatio || 1;
    if (d.pan) {
      this.offsetX += at[0] - d.now[0];
      this.offsetY += at[1] - d.now[1];
      this.fitted = false;
    }
    d.now = at;
    if (Math.hypot(at[0] - d.start[0], at[1] - d.start[1]) > DRAG_PIXELS * dpr) d.moved = true;
    this.draw();
  }

  up(e) {
    const d = this.drag;
    this.drag = null;
    this.canvas.classList.remove("panning");
    if (!d || !this.image) return;
    if (d.pan) return;
    const start = this.toImage(d.start);
    const end = this.toImage(this.devicePoint(e));
    if (d.button === 0 && d.moved) {
      const [x0, y0] = this.clamp(start);
      const [x1, y1] = this.clamp(end);
      const box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(round1);
      this.draw();
      if (box[2] - box[0] >= 1 && box[3] - box[1] >= 1) this.handlers.onBox(box);
      return;
    }
    this.draw();
    if (!this.inside(start)) return;
    const label = d.button === 2 || d.shift ? 0 : 1;
    if (d.button === 0 || d.button === 2) this.handlers.onPoint(round1(start[0]), round1(start[1]), label);
  }

  wheel(e) {
    if (!this.image) return;
    e.preventDefault();
    const [cx, cy] = this.devicePoint(e);
    this.zoom(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), cx, cy);
  }

  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.paint();
    });
  }

  /** Paint now (also used by tests through the draw loop: the canvas is always a full frame). */
  paint() {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image) return;
    ctx.setTransform(this.scale, 0, 0, this.scale, this.offsetX, this.offsetY);
    ctx.imageSmoothingEnabled = this.scale < 2;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.image, 0, 0);
    // Where the image is, in canvas pixels (scale, left, top): lets tests map image pixels to the canvas.
    canvas.dataset.view = `${this.scale},${this.offsetX},${this.offsetY}`;
    if (this.extra) ctx.drawImage(this.extra, 0, 0);
    if (this.overlay) ctx.drawImage(this.overlay, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.paintPrompts();
    this.paintDrag();
  }

  screen([x, y]) {
    return [x * this.scale + this.offsetX, y * this.scale + this.offsetY];
  }

  paintPrompts() {
    const { ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    for (const p of this.prompts) {
      if (p.box) {
        const [x0, y0] = this.screen([p.box[0], p.box[1]]);
        const [x1, y1] = this.screen([p.box[2], p.box[3]]);
        ctx.save();
        ctx.strokeStyle = cssColor(p.color);
        ctx.lineWidth = (p.selected ? 2 : 1.25) * dpr;
        if (!p.selected) ctx.setLineDash([6 * dpr, 4 * dpr]);
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
        ctx.restore();
      }
      const radius = (p.selected ? 6 : 4) * dpr;
      p.points.forEach((point, i) => {
        const [sx, sy] = this.screen(point);
        const positive = p.labels[i] === 1;
        ctx.beginPath();
        ctx.arc(sx, sy, radius, 0, 2 * Math.PI);
        ctx.fillStyle = positive ? "#22c55e" : "#ef4444";
        ctx.fill();
        ctx.lineWidth = 1.5 * dpr;
        ctx.strokeStyle = p.selected ? "#ffffff" : "rgba(255,255,255,0.6)";
        ctx.stroke();
        // A sign inside, so the label reads without relying on colour.
        ctx.beginPath();
        const arm = radius * 0.5;
        ctx.moveTo(sx - arm, sy);
        ctx.lineTo(sx + arm, sy);
        if (positive) {
          ctx.moveTo(sx, sy - arm);
          ctx.lineTo(sx, sy + arm);
        }
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 1.5 * dpr;
        ctx.stroke();
      });
    }
  }

  paintDrag() {
    const d = this.drag;
    if (!d || d.pan || !d.moved || d.button !== 0) return;
    const { ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const [x0, y0] = this.screen(this.clamp(this.toImage(d.start)));
    const [x1, y1] = this.screen(this.clamp(this.toImage(d.now)));
    ctx.save();
    ctx.setLineDash([5 * dpr, 4 * dpr]);
    ctx.lineWidth = 1.5 * dpr;
    ctx.strokeStyle = "#ffffff";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.fillStyle = "rgba(255,255,255,0.08)";
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    ctx.restore();
  }
}

function round1(v) {
  return Math.round(v * 10) / 10;
}
