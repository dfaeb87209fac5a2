// Masks painted into one RGBA overlay per frame: translucent fills with opaque outlines.
//
// The outline is the mask minus its erosion by `thickness` pixels (a square structuring element, computed with two
// separable running-window passes, so the cost does not grow with the thickness). Drawing the overlay on top of the
// frame is then a single drawImage, however many objects there are.

/** 1 where all pixels of the (2t+1)^2 window around are in the mask (outside the image counts as outside). */
function erode(mask, width, height, t) {
  const span = 2 * t + 1;
  const rows = new Uint8Array(width * height);
  for (let y = 0; y < height; y += 1) {
    const base = y * width;
    let run = 0; // on-pixels in the window [x - t, x + t]
    for (let x = 0; x < Math.min(t, width); x += 1) run += mask[base + x];
    for (let x = 0; x < width; x += 1) {
      if (x + t < width) run += mask[base + x + t];
      if (x - t - 1 >= 0) run -= mask[base + x - t - 1];
      rows[base + x] = run === span ? 1 : 0;
    }
  }
  const out = new Uint8Array(width * height);
  for (let x = 0; x < width; x += 1) {
    let run = 0;
    for (let y = 0; y < Math.min(t, height); y += 1) run += rows[y * width + x];
    for (let y = 0; y < height; y += 1) {
      if (y + t < height) run += rows[(y + t) * width + x];
      if (y - t - 1 >= 0) run -= rows[(y - t - 1) * width + x];
      out[y * width + x] = run === span ? 1 : 0;
    }
  }
  return out;
}

/**
 * Paint masks into a canvas of the image's size.
 * layers: [{mask: Uint8Array(h*w) of 0/1, color: [r, g, b], fill: 0..1}], painted in order (later on top).
 * thickness: outline width in image pixels.
 */
export function paintOverlay(width, height, layers, thickness = 1) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const data = image.data;
  for (const { mask, color, fill } of layers) {
    const inner = erode(mask, width, height, Math.max(1, thickness));
    const [r, g, b] = color;
    const fillAlpha = Math.round(255 * fill);
    for (let i = 0; i < mask.length; i += 1) {
      if (!mask[i]) continue;
      const o = 4 * i;
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
      data[o + 3] = inner[i] ? fillAlpha : 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

/** Distinct, readable object colours (index 0 is object 1). */
export const PALETTE = [
  [255, 87, 51],
  [46, 204, 113],
  [52, 152, 219],
  [241, 196, 15],
  [155, 89, 182],
  [26, 188, 156],
  [230, 126, 34],
  [236, 64, 122],
  [149, 165, 166],
  [0, 184, 255],
  [205, 220, 57],
  [121, 85, 72],
  [255, 138, 216],
  [63, 81, 181],
  [0, 150, 136],
  [255, 193, 7],
];

export function objectColor(objectId) {
  return PALETTE[(objectId - 1 + PALETTE.length) % PALETTE.length];
}

export function cssColor([r, g, b], alpha = 1) {
  return alpha === 1 ? `rgb(${r}, ${g}, ${b})` : `rgba(${r}, ${g}, ${b}, ${alpha})`;
}
