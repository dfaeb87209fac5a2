// Segment everything (images) and export (COCO JSON, DAVIS zip).

import { $, api, busy, enqueue, hooks, state } from "./state.js";
import { paintOverlay, PALETTE } from "./overlay.js";
import { decodeRle } from "./rle.js";
import * as ui from "./ui.js";

export async function everything() {
  const s = state.session;
  if (!s || s.kind !== "image") return;
  $("everything").disabled = true;
  try {
    const options = {
      points_per_side: Number($("amg-points").value),
      pred_iou_thresh: Number($("amg-iou").value),
      stability_score_thresh: Number($("amg-stability").value),
      min_mask_region_area: Number($("amg-min-area").value),
    };
    const answer = await enqueue(() => busy(api.everything(s.id, options)));
    const annotations = answer.annotations || [];
    const layers = annotations.map((a, i) => ({
      mask: decodeRle(a.segmentation),
      color: PALETTE[(i * 7) % PALETTE.length],
      fill: 0.28,
    }));
    const thickness = Math.max(1, Math.round(1.5 * hooks.viewer.imagePixelsPerScreenPixel()));
    state.everything = {
      count: annotations.length,
      canvas: layers.length ? paintOverlay(s.width, s.height, layers, thickness) : null,
    };
    ui.toast(`Segment everything: ${annotations.length} masks`, "info");
    $("everything-clear").hidden = false;
    hooks.refresh();
  } catch (error) {
    ui.showError(error, "Segment everything failed");
  } finally {
    $("everything").disabled = false;
  }
}

export function clearEverything() {
  state.everything = null;
  $("everything-clear").hidden = true;
  hooks.refresh();
}

export async function exportAs(format) {
  const s = state.session;
  if (!s) {
    ui.toast("Open an image or a video first", "info");
    return;
  }
  try {
    const { blob, filename } = await enqueue(() => busy(api.exportFile(s.id, format)));
    const base = s.name.replace(/\.[^./]+$/, "").replace(/[^\w.-]+/g, "_") || "session";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename || `${base}_${format}.${format === "coco" ? "json" : "zip"}`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    state.dirty = false;
    ui.toast(`Exported ${a.download}`);
  } catch (error) {
    ui.showError(error, `Export ${format.toUpperCase()} failed`);
  }
}
