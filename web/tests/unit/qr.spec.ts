import { readFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import { decodeFrame, type Frame } from "../../src/qr";

// The daemon's real pairing QR code, as a terminal shows it (fixtures/pair-qr.txt).
const [link, ...rows] = readFileSync(new URL("fixtures/pair-qr.txt", import.meta.url), "utf8")
  .split("\n")
  .filter((line) => line && !line.startsWith("#"));

/** The terminal's cells as modules: true where the text colour shows (each cell is two rows). */
function modules(): boolean[][] {
  const top = { "█": true, "▀": true, "▄": false, " ": false } as Record<string, boolean>;
  const bottom = { "█": true, "▀": false, "▄": true, " ": false } as Record<string, boolean>;
  return rows.flatMap((row) => [[...row].map((c) => top[c]!), [...row].map((c) => bottom[c]!)]);
}

/** A camera-sized frame of the terminal: `scale` pixels per module, turned by `turn` radians, on a
 *  grey desk, blurred a little and with some deterministic noise, like a phone camera's. */
function photo(text: number, background: number, scale: number, turn = 0): Frame {
  const width = 640;
  const height = 480;
  const grid = modules();
  const cos = Math.cos(turn);
  const sin = Math.sin(turn);
  const grey = new Float32Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const u = Math.floor((cos * (x - width / 2) + sin * (y - height / 2)) / scale + grid[0]!.length / 2);
      const v = Math.floor((-sin * (x - width / 2) + cos * (y - height / 2)) / scale + grid.length / 2);
      const on = grid[v]?.[u];
      grey[y * width + x] = on === undefined ? 128 : on ? text : background;
    }
  let seed = 7;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let sum = 0;
      let count = 0;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++)
          if (x + dx >= 0 && x + dx < width && y + dy >= 0 && y + dy < height) {
            sum += grey[(y + dy) * width + x + dx]!;
            count++;
          }
      seed = (seed * 1103515245 + 12345) >>> 0;
      const value = sum / count + ((seed >>> 16) % 31) - 15;
      data.set([value, value, value, 255], (y * width + x) * 4);
    }
  return { data, width, height };
}

test("the fallback decoder reads the daemon's pairing QR code from a dark or a light terminal", () => {
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/pair#[\w-]{100,}$/);
  // A dark terminal: light text on a dark background, so the code is the right way round.
  expect(decodeFrame(photo(230, 25, 3))).toBe(link);
  expect(decodeFrame(photo(230, 25, 4, 0.3))).toBe(link);
  // A light terminal: dark text on white, so the code is inverted.
  expect(decodeFrame(photo(20, 245, 3))).toBe(link);
  expect(decodeFrame(photo(20, 245, 5, 0.3))).toBe(link);
});

test("a frame without a code is a miss, not an error", () => {
  expect(decodeFrame(photo(128, 128, 5))).toBeNull();
});
