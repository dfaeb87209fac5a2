// The page's state, shared by its modules, and the helpers that order and count API calls.

import { Api } from "./api.js";
import * as ui from "./ui.js";

export const $ = (id) => document.getElementById(id);
export const api = new Api(ui.askToken);

export const state = {
  session: null, // {id, kind, width, height, numFrames, name}
  frames: null, // FrameStore
  frame: 0,
  objects: [], // [{id, name, visible}]
  selected: null,
  nextId: 1,
  prompts: new Map(), // "t:k" -> {points: [[x, y]], labels: [1|0], box: [x0, y0, x1, y1] | null}
  resync: new Set(), // "t:k" whose server prompts may differ from ours (after an error): send them whole
  history: [], // undo stack: [{t, k, before}]
  masks: new Map(), // t -> {objects: Map(k -> {rle, score, area, mask?}), version}
  version: 0, // bumped on every prompt change; masks computed before are stale
  overlays: new Map(), // t -> overlay canvas (a cache)
  everything: null, // {count, canvas}
  showMasks: true,
  playing: false,
  tracking: null, // {controller, seen, total}
  dirty: false, // prompts changed since the last export
  fetched: null, // resumed session: Set of frames whose masks were fetched from the server
  pending: 0,
};

/** What app.js provides to the other modules (set once at start). */
export const hooks = { viewer: null, refresh: null, showFrame: null, newObject: null, renderTimeline: null };

let queue = Promise.resolve();

/** Run API calls that change the session one after the other, in the order the user made them. */
export function enqueue(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}

/** Resolves once every call queued so far has answered. */
export function idle() {
  return queue;
}

/** Count in-flight requests (spinner; tests wait for data-pending="0"). */
export async function busy(promise) {
  state.pending += 1;
  document.body.dataset.pending = String(state.pending);
  try {
    return await promise;
  } finally {
    state.pending -= 1;
    document.body.dataset.pending = String(state.pending);
  }
}

export function hasPrompts(t) {
  return state.objects.some((o) => state.prompts.has(`${t}:${o.id}`));
}

export function invalidate(t) {
  if (t === undefined) state.overlays.clear();
  else state.overlays.delete(t);
}

/** Store the masks of frame t (replace: the frame's whole set, as propagation sends; else merge by object id). */
export function setMasks(t, objects, replace, version = state.version) {
  const old = state.masks.get(t);
  const entry = { objects: replace || !old ? new Map() : old.objects, version };
  state.masks.set(t, entry);
  for (const o of objects) {
    entry.objects.set(o.object_id, { rle: o.mask, score: o.score, area: o.area, bbox: o.bbox });
    if (!state.objects.some((x) => x.id === o.object_id)) {
      state.objects.push({ id: o.object_id, name: `object ${o.object_id}`, visible: true });
      state.nextId = Math.max(state.nextId, o.object_id + 1);
    }
  }
  invalidate(t);
}
