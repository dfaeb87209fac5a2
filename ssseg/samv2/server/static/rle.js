// COCO run-length encoding, decoded in the browser.
//
// The API sends masks as COCO RLE: {"size": [h, w], "counts": "<compressed string>"} (pycocotools' format) or, for
// uncompressed RLE, "counts" as a list of run lengths. Runs alternate 0 / 1 starting with 0 and walk the mask in
// column-major (Fortran) order; decodeRle returns a row-major Uint8Array of h * w zeros and ones, ready to paint.

/** Run lengths of a compressed COCO RLE string (LEB128-like, 5 bits a char, deltas from the run two back). */
export function decodeCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= text.length) throw new Error("truncated RLE string");
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10) !== 0) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Row-major h * w Uint8Array (0/1) of a COCO RLE object. */
export function decodeRle(rle) {
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeCounts(rle.counts) : rle.counts;
  const mask = new Uint8Array(h * w);
  let idx = 0; // column-major index
  for (let i = 0; i < counts.length; i += 1) {
    const run = counts[i];
    if (i % 2 === 1) {
      for (let j = idx; j < idx + run; j += 1) {
        const col = (j / h) | 0;
        mask[(j - col * h) * w + col] = 1;
      }
    }
    idx += run;
  }
  if (idx !== h * w) throw new Error(`RLE covers ${idx} pixels, expected ${h}x${w}=${h * w}`);
  return mask;
}
