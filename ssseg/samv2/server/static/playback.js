// Videos: playing the frames and tracking the objects through them (an NDJSON stream with a progress bar).

import { ApiError, errorMessage } from "./api.js";
import { $, api, hooks, idle, setMasks, state } from "./state.js";
import * as ui from "./ui.js";
import { framesToTrack } from "./video.js";

const PLAY_FPS = 12;

export function togglePlay() {
  if (!state.session || state.session.kind !== "video") return;
  if (state.playing) stopPlaying();
  else play();
}

const PLAY_ICON = '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M4 2v12l10-6z"/></svg>';
const PAUSE_ICON = '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M3 2h4v12H3zM9 2h4v12H9z"/></svg>';

export function stopPlaying() {
  state.playing = false;
  $("play").innerHTML = PLAY_ICON;
  $("play").title = "Play (Space)";
}

let playRun = 0; // the current playback; an older loop still waiting on a frame sees it is stale and ends

async function play() {
  const s = state.session;
  const run = ++playRun;
  state.playing = true;
  $("play").innerHTML = PAUSE_ICON;
  $("play").title = "Pause (Space)";
  let t = state.frame >= s.numFrames - 1 ? -1 : state.frame;
  const playing = () => state.playing && playRun === run && state.session === s;
  while (playing() && t < s.numFrames - 1) {
    const started = performance.now();
    t += 1;
    await hooks.showFrame(t);
    const wait = 1000 / PLAY_FPS - (performance.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  if (playRun === run) stopPlaying();
}

export async function track() {
  const s = state.session;
  if (!s || s.kind !== "video" || state.tracking) return;
  if (!state.prompts.size) {
    ui.toast("Click on an object first, then track.", "info");
    return;
  }
  stopPlaying();
  await idle(); // the prompts sent so far are in
  const direction = $("direction").value;
  const start = state.frame;
  const total = framesToTrack(s.numFrames, start, direction);
  const version = state.version;
  const tracking = { controller: new AbortController(), seen: new Set(), total };
  state.tracking = tracking;
  setTrackingUi(true);
  progress(0, total);
  let showing = false;
  try {
    let done = null;
    const body = { start_frame: start, direction, max_frames: null };
    for await (const message of api.propagate(s.id, body, tracking.controller.signal)) {
      if (state.session !== s) return; // the page moved to another session
      if (message.error) throw new ApiError(message.error.status || 500, errorMessage(message));
      if (message.done) {
        done = message;
        break;
      }
      setMasks(message.frame, message.objects || [], true, version);
      tracking.seen.add(message.frame);
      progress(tracking.seen.size, total);
      if ($("follow").checked && !showing) {
        showing = true;
        hooks.showFrame(message.frame).finally(() => (showing = false));
      } else if (message.frame === state.frame) hooks.refresh();
      else hooks.renderTimeline();
    }
    if (!done) throw new ApiError(0, "the tracking stream ended early");
    state.dirty = true;
    ui.toast(done.cancelled ? `Tracking cancelled after ${done.frames} frames` : `Tracked ${done.frames} frames`);
  } catch (error) {
    if (state.session !== s) return;
    if (error.name === "AbortError") ui.toast("Tracking stopped", "info");
    else ui.showError(error, "Tracking failed");
  } finally {
    if (state.tracking === tracking) {
      state.tracking = null;
      setTrackingUi(false);
    }
    if (state.session === s) hooks.refresh();
  }
}

/** Ask the server to stop tracking (it answers with a last line, cancelled: true). */
export async function cancelTracking() {
  const tracking = state.tracking;
  if (!tracking) return;
  $("cancel").disabled = true;
  try {
    await api.cancel(state.session.id);
  } catch {
    tracking.controller.abort(); // the server also cancels when the client goes away
  }
}

/** Drop the tracking at once (the session is being closed): the server cancels when the stream is closed. */
export function abandonTracking() {
  const tracking = state.tracking;
  if (!tracking) return;
  state.tracking = null;
  tracking.controller.abort();
  setTrackingUi(false);
}

function setTrackingUi(on) {
  document.body.classList.toggle("tracking", on);
  $("track").disabled = on;
  $("cancel").hidden = !on;
  $("cancel").disabled = false;
  $("progress").hidden = !on;
}

function progress(count, total) {
  const f = total ? Math.min(1, count / total) : 0;
  $("progress").querySelector(".bar").style.width = `${(100 * f).toFixed(1)}%`;
  $("progress").querySelector(".label").textContent = `${count} / ${total}`;
}
