// Prompts: clicks and boxes per (frame, object), their undo stack, and sending them to the server.

import { stopPlaying } from "./playback.js";
import { api, busy, enqueue, hooks, invalidate, setMasks, state } from "./state.js";
import * as ui from "./ui.js";

const emptyPrompt = () => ({ points: [], labels: [], box: null });
const clonePrompt = (p) => ({ points: p.points.map((q) => [...q]), labels: [...p.labels], box: p.box && [...p.box] });
const isEmpty = (p) => !p.points.length && !p.box;

function canEdit() {
  if (!state.session) return false;
  stopPlaying(); // a click labels the frame on screen
  if (state.tracking) {
    ui.toast("Tracking is running: wait or cancel it (Esc) before changing prompts.", "info");
    return false;
  }
  if (state.selected === null) hooks.newObject();
  return true;
}

/** Record the change of (t, k) to `after` (undoable), draw it at once, and send it. */
function change(t, k, after, added = null) {
  const key = `${t}:${k}`;
  const entry = { t, k, before: clonePrompt(state.prompts.get(key) || emptyPrompt()) };
  state.history.push(entry);
  if (isEmpty(after)) state.prompts.delete(key);
  else state.prompts.set(key, after);
  state.version += 1;
  state.dirty = true;
  hooks.refresh();
  send(t, k, added, entry);
}

export function addPoint(x, y, label) {
  if (!canEdit()) return;
  const t = state.frame;
  const k = state.selected;
  const p = clonePrompt(state.prompts.get(`${t}:${k}`) || emptyPrompt());
  p.points.push([x, y]);
  p.labels.push(label);
  change(t, k, p, { point: [x, y], label });
}

export function setBox(box) {
  if (!canEdit()) return;
  const t = state.frame;
  const k = state.selected;
  const p = clonePrompt(state.prompts.get(`${t}:${k}`) || emptyPrompt());
  p.box = box;
  change(t, k, p);
}

export function clearPrompts() {
  if (!canEdit()) return;
  const key = `${state.frame}:${state.selected}`;
  if (!state.prompts.has(key)) return;
  change(state.frame, state.selected, emptyPrompt());
}

export function undo() {
  if (!state.session) return;
  if (state.tracking) {
    ui.toast("Tracking is running: wait or cancel it (Esc) before undoing.", "info");
    return;
  }
  const last = state.history.pop();
  if (!last) {
    ui.toast("Nothing to undo", "info");
    return;
  }
  const key = `${last.t}:${last.k}`;
  if (isEmpty(last.before)) state.prompts.delete(key);
  else state.prompts.set(key, last.before);
  state.version += 1;
  state.selected = last.k;
  if (last.t !== state.frame) hooks.showFrame(last.t);
  invalidate();
  hooks.refresh();
  send(last.t, last.k, null, null);
}

/**
 * Send the prompts of (t, k) to the server. A click adds its point to the server's prompts (clear_old false: an image
 * session then refines with the previous mask, a video adds the point, as the tutorials do); a box, an undo or a
 * resync replaces them all (clear_old true); no prompts left clears them. On an error the local prompts roll back.
 */
function send(t, k, added, entry) {
  const key = `${t}:${k}`;
  const sid = state.session.id;
  return enqueue(async () => {
    if (!state.session || state.session.id !== sid) return;
    const p = state.prompts.get(key) || emptyPrompt();
    const whole = !added || state.resync.has(key);
    try {
      if (isEmpty(p)) {
        const answer = await busy(api.clearPrompts(sid, t, k));
        setMasks(t, answer?.objects || [], true);
      } else {
        const body = whole
          ? { frame: t, object_id: k, points: p.points, labels: p.labels, box: p.box, clear_old: true }
          : { frame: t, object_id: k, points: [added.point], labels: [added.label], box: null, clear_old: false };
        const answer = await busy(api.prompt(sid, body));
        setMasks(answer.frame ?? t, answer.objects || [], true); // the frame's objects, all of them
      }
      state.resync.delete(key);
    } catch (error) {
      ui.showError(error, "Prompt refused");
      if (entry) {
        // Roll back to what the server had; the next change of this object sends its prompts whole.
        if (isEmpty(entry.before)) state.prompts.delete(key);
        else state.prompts.set(key, entry.before);
        state.history = state.history.filter((h) => h !== entry);
      }
      state.resync.add(key);
    }
    invalidate(t);
    hooks.refresh();
  });
}
