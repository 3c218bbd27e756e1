// Draws the app's icons as PNG files into public/ (committed; run again only to change them):
// three machines joined to one phone, light on the app's dark colour. Deterministic: the same
// pixels and zlib settings give the same bytes.
//
//   node scripts/icons.mjs

import { writeFileSync } from "node:fs";
import { constants, deflateSync } from "node:zlib";

const BG = [0x11, 0x13, 0x18];
const FG = [0x5b, 0x9b, 0xff];
const LIGHT = [0xe6, 0xe8, 0xec];

/** Signed distance from p to the segment a–b, minus the half width. */
function segment(px, py, ax, ay, bx, by, half) {
  const dx = bx - ax, dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - ax - t * dx, py - ay - t * dy) - half;
}

/** The colour at (x, y) in unit coordinates, or null outside the icon. `inset` shrinks the
 *  drawing to the maskable safe zone; `round` cuts the corners. */
function shade(x, y, { inset, round }) {
  if (round) {
    const r = 0.18;
    const cx = Math.min(Math.max(x, r), 1 - r), cy = Math.min(Math.max(y, r), 1 - r);
    if (Math.hypot(x - cx, y - cy) > r) return null;
  }
  const u = (x - 0.5) / inset + 0.5, v = (y - 0.5) / inset + 0.5;
  const machines = [0.28, 0.5, 0.72];
  const phone = [0.72, 0.5];
  for (const my of machines) if (Math.hypot(u - 0.28, v - my) < 0.075) return LIGHT;
  if (Math.abs(u - phone[0]) < 0.085 && Math.abs(v - phone[1]) < 0.15) return FG;
  for (const my of machines) if (segment(u, v, 0.28, my, phone[0], phone[1], 0.022) < 0) return FG;
  return BG;
}

/** The icon's pixels, RGBA rows, supersampled `S`×`S` per pixel for smooth edges. */
function pixels(size, options) {
  const S = 4; // supersampling per axis
  const rgba = Buffer.alloc(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const c = shade((x + (sx + 0.5) / S) / size, (y + (sy + 0.5) / S) / size, options);
          if (c) { r += c[0]; g += c[1]; b += c[2]; a += 255; }
        }
      }
      const n = S * S, covered = a / 255;
      const o = (y * size + x) * 4;
      rgba[o] = covered ? Math.round(r / covered) : 0;
      rgba[o + 1] = covered ? Math.round(g / covered) : 0;
      rgba[o + 2] = covered ? Math.round(b / covered) : 0;
      rgba[o + 3] = Math.round(a / n);
    }
  }
  return rgba;
}

/** A PNG of `rgba`, as small as a plain encoder gets it (the icons count against the app's
 *  size budget): an 8-bit palette with transparency when the colours fit in 256 (they are a few
 *  dozen: three colours and their anti-aliased edges), else RGBA; the row filter and zlib
 *  strategy that give the fewest bytes. */
function png(size, rgba) {
  const colours = new Map(); // RGBA as a number → count
  for (let o = 0; o < rgba.length; o += 4) {
    const key = rgba.readUInt32BE(o);
    colours.set(key, (colours.get(key) ?? 0) + 1);
  }
  const paletted = colours.size <= 256;
  let palette = [];
  let bytesPerPixel = 4;
  let samples = rgba;
  if (paletted) {
    // Translucent entries first so that tRNS stops at the last of them; then by use, commonest
    // first; ties by value, so the order is always the same.
    palette = [...colours.entries()]
      .sort(([a, m], [b, n]) => +((a & 0xff) === 0xff) - +((b & 0xff) === 0xff) || n - m || a - b)
      .map(([key]) => key);
    const index = new Map(palette.map((key, i) => [key, i]));
    samples = Buffer.alloc(size * size);
    for (let i = 0; i < samples.length; i++) samples[i] = index.get(rgba.readUInt32BE(i * 4));
    bytesPerPixel = 1;
  }
  const stride = size * bytesPerPixel;
  const filtered = (type) => {
    const out = Buffer.alloc(size * (1 + stride));
    for (let y = 0; y < size; y++) {
      const t = type === "adaptive" ? bestFilter(samples, y, stride, bytesPerPixel) : type;
      out[y * (1 + stride)] = t;
      filterRow(samples, y, stride, bytesPerPixel, t, out.subarray(y * (1 + stride) + 1, (y + 1) * (1 + stride)));
    }
    return out;
  };
  let idat = null;
  for (const type of [0, 1, 2, 3, 4, "adaptive"]) {
    const rows = filtered(type);
    for (const strategy of [constants.Z_DEFAULT_STRATEGY, constants.Z_FILTERED]) {
      const packed = deflateSync(rows, { level: 9, memLevel: 9, strategy });
      if (!idat || packed.length < idat.length) idat = packed;
    }
  }
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "ascii");
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = paletted ? 3 : 6; // indexed or RGBA
  const chunks = [chunk("IHDR", header)];
  if (paletted) {
    chunks.push(chunk("PLTE", Buffer.from(palette.flatMap((key) => [key >>> 24, (key >>> 16) & 0xff, (key >>> 8) & 0xff]))));
    const alphas = palette.map((key) => key & 0xff);
    const translucent = alphas.findLastIndex((alpha) => alpha !== 0xff) + 1;
    if (translucent) chunks.push(chunk("tRNS", Buffer.from(alphas.slice(0, translucent))));
  }
  chunks.push(chunk("IDAT", idat), chunk("IEND", Buffer.alloc(0)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ...chunks]);
}

/** PNG row filter `type` of row `y` into `out`. */
function filterRow(samples, y, stride, bpp, type, out) {
  const at = (x, row) => (x < 0 || row < 0 ? 0 : samples[row * stride + x]);
  for (let x = 0; x < stride; x++) {
    const value = at(x, y), left = at(x - bpp, y), up = at(x, y - 1), corner = at(x - bpp, y - 1);
    let predicted = 0;
    if (type === 1) predicted = left;
    else if (type === 2) predicted = up;
    else if (type === 3) predicted = (left + up) >> 1;
    else if (type === 4) {
      const p = left + up - corner, pa = Math.abs(p - left), pb = Math.abs(p - up), pc = Math.abs(p - corner);
      predicted = pa <= pb && pa <= pc ? left : pb <= pc ? up : corner;
    }
    out[x] = (value - predicted) & 0xff;
  }
}

/** The filter libpng's heuristic picks for row `y`: the least sum of the bytes as signed. */
function bestFilter(samples, y, stride, bpp) {
  const out = Buffer.alloc(stride);
  let best = 0, bestSum = Infinity;
  for (let type = 0; type <= 4; type++) {
    filterRow(samples, y, stride, bpp, type, out);
    let sum = 0;
    for (const byte of out) sum += byte < 128 ? byte : 256 - byte;
    if (sum < bestSum) (best = type), (bestSum = sum);
  }
  return best;
}

const TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const out = new URL("../public/", import.meta.url);
for (const [name, size, options] of [
  ["icon-192.png", 192, { inset: 1, round: true }],
  ["icon-512.png", 512, { inset: 1, round: true }],
  ["icon-maskable-512.png", 512, { inset: 0.75, round: false }],
  ["apple-touch-icon.png", 180, { inset: 0.85, round: false }],
]) {
  writeFileSync(new URL(name, out), png(size, pixels(size, options)));
}
