// Frames of a session: fetched as JPEG from the API, decoded once, kept in a small LRU cache and prefetched ahead of
// playback; and the timeline strip under the frame slider (which frames have masks, which are stale, which prompted).

const CACHE_FRAMES = 48;

export class FrameStore {
  constructor(api, sessionId, numFrames) {
    this.api = api;
    this.sessionId = sessionId;
    this.numFrames = numFrames;
    this.cache = new Map(); // t -> Promise<ImageBitmap>, in least-recently-used order
  }

  /** The decoded frame t (an ImageBitmap). */
  get(t) {
    let entry = this.cache.get(t);
    if (entry) {
      this.cache.delete(t);
      this.cache.set(t, entry);
      return entry;
    }
    entry = this.api.frame(this.sessionId, t).then((blob) => createImageBitmap(blob));
    entry.catch(() => this.cache.delete(t));
    this.cache.set(t, entry);
    while (this.cache.size > CACHE_FRAMES) {
      const [oldest, promise] = this.cache.entries().next().value;
      this.cache.delete(oldest);
      promise.then((bitmap) => bitmap.close?.()).catch(() => {});
    }
    return entry;
  }

  prefetch(t, count = 4) {
    for (let i = 1; i <= count && t + i < this.numFrames; i += 1) {
      if (!this.cache.has(t + i)) this.get(t + i).catch(() => {});
    }
  }

  dispose() {
    for (const promise of this.cache.values()) promise.then((b) => b.close?.()).catch(() => {});
    this.cache.clear();
  }
}

/**
 * Paint the timeline: one cell per frame; tracked frames in the accent colour (dimmed when stale: tracked before the
 * last prompt change), prompted frames as a tick, the current frame as a marker.
 * frames: [{tracked: bool, stale: bool, prompted: bool}] of length numFrames.
 */
export function paintTimeline(canvas, frames, current) {
  const dpr = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(rect.width * dpr));
  canvas.height = Math.max(1, Math.round(rect.height * dpr));
  const ctx = canvas.getContext("2d");
  const n = frames.length;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!n) return;
  const cell = canvas.width / n;
  const h = canvas.height;
  const style = getComputedStyle(document.documentElement);
  const tracked = style.getPropertyValue("--tracked").trim() || "#3b82f6";
  const stale = style.getPropertyValue("--stale").trim() || "#a16207";
  const tick = style.getPropertyValue("--prompted").trim() || "#fde047";
  for (let t = 0; t < n; t += 1) {
    const f = frames[t];
    if (!f.tracked) continue;
    ctx.fillStyle = f.stale ? stale : tracked;
    ctx.fillRect(Math.floor(t * cell), h * 0.35, Math.max(1, Math.ceil(cell)), h * 0.65);
  }
  ctx.fillStyle = tick;
  for (let t = 0; t < n; t += 1) {
    if (frames[t].prompted) ctx.fillRect(Math.floor(t * cell + cell / 2 - dpr), 0, 2 * dpr, h);
  }
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(Math.floor(current * cell), 0, Math.max(2 * dpr, Math.ceil(cell)), h * 0.3);
}

/** Frames a propagation from `start` in `direction` visits (for the progress bar). */
export function framesToTrack(numFrames, start, direction, maxFrames = null) {
  const cap = (n) => (maxFrames ? Math.min(n, maxFrames + 1) : n);
  if (direction === "forward") return cap(numFrames - start);
  if (direction === "backward") return cap(start + 1);
  return Math.min(numFrames, cap(numFrames - start) + cap(start + 1) - 1);
}
