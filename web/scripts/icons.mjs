// Draws the app's icons as PNG files into public/ (committed; run again only to change them):
// three machines joined to one phone, light on the app's dark colour. Deterministic: the same
// pixels and zlib settings give the same bytes.
//
//   node scripts/icons.mjs

import { writeFileSync } from "node:fs";
import { deflateSync } from "node:zlib";

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

function png(size, options) {
  const S = 4; // supersampling per axis
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < S; sy++) {
        for (let sx = 0; sx < S; sx++) {
          const c = shade((x + (sx + 0.5) / S) / size, (y + (sy + 0.5) / S) / size, options);
          if (c) { r += c[0]; g += c[1]; b += c[2]; a += 255; }
        }
      }
      const n = S * S, covered = a / 255;
      const o = 1 + x * 4;
      row[o] = covered ? Math.round(r / covered) : 0;
      row[o + 1] = covered ? Math.round(g / covered) : 0;
      row[o + 2] = covered ? Math.round(b / covered) : 0;
      row[o + 3] = Math.round(a / n);
    }
    rows.push(row);
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
  header[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk("IEND", Buffer.alloc(0)),
  ]);
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
writeFileSync(new URL("icon-192.png", out), png(192, { inset: 1, round: true }));
writeFileSync(new URL("icon-512.png", out), png(512, { inset: 1, round: true }));
writeFileSync(new URL("icon-maskable-512.png", out), png(512, { inset: 0.75, round: false }));
writeFileSync(new URL("apple-touch-icon.png", out), png(180, { inset: 0.85, round: false }));
