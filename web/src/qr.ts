// The QR decoder for camera frames where the browser has no BarcodeDetector: paulmillr's `qr`
// (its decoder only, about a third of jsQR's size). Loaded only then, by the scanner.

import decodeQR from "qr/decode.js";

/** RGBA pixels, as a canvas's `ImageData` holds them. */
export interface Frame {
  data: Uint8ClampedArray | Uint8Array;
  width: number;
  height: number;
}

/** The text of the QR code in `frame`, or null when none is found (the next frame may have it). */
export function decodeFrame(frame: Frame): string | null {
  try {
    return decodeQR({ data: frame.data, width: frame.width, height: frame.height });
  } catch {
    return null;
  }
}
