// Pairing: a `/pair#TICKET` link opened in the browser pairs at once (main.tsx starts it); the
// installed app pairs from a pasted link or the camera. A bad link gets one clear message (the
// core's), and nothing is stored.

import { useEffect, useRef, useState } from "preact/hooks";
import { href } from "../route";
import { pairWith, pairing } from "../state";
import { revealPlain } from "../text";
import { T } from "./common";

export function Pair() {
  const [link, setLink] = useState("");
  const [scanning, setScanning] = useState(false);
  const p = pairing.value;
  return (
    <section class="screen" aria-labelledby="pair-h">
      <h2 id="pair-h">Pair a machine</h2>
      {p.state === "pairing" && (
        <p class="card progress" role="status" aria-live="polite">
          Pairing… checking the machine's key through the relay.
        </p>
      )}
      {p.state === "paired" && (
        <div class="card ok" role="status" aria-live="polite">
          <p>
            Paired with <strong><T text={p.machine.hostname} /></strong>
          </p>
          <p class="fp-short">{p.machine.short}</p>
          <p class="row">
            <a class="button primary" href={href({ screen: "machines" })}>
              Show machines
            </a>
          </p>
        </div>
      )}
      {p.state === "failed" && (
        <p class="card error" role="alert">
          This link cannot pair: {p.message}
        </p>
      )}
      <form
        class="form"
        onSubmit={(e) => {
          e.preventDefault();
          if (link.trim()) void pairWith(link);
        }}
      >
        <label>
          Pairing link
          <input
            type="url"
            inputMode="url"
            value={link}
            onInput={(e) => setLink(e.currentTarget.value)}
            placeholder="https://relay…/pair#…"
            autocomplete="off"
            autocapitalize="off"
            spellcheck={false}
          />
        </label>
        <button type="submit" class="primary" disabled={!link.trim() || p.state === "pairing"}>
          Pair
        </button>
      </form>
      <p class="muted">
        Or scan the QR code the machine prints (<code>muxagent daemon start</code> or <code>muxagent pair</code>).
      </p>
      {scanning ? (
        <Scanner
          onCode={(code) => {
            setScanning(false);
            void pairWith(code);
          }}
          onClose={() => setScanning(false)}
        />
      ) : (
        <button type="button" onClick={() => setScanning(true)}>
          Scan a QR code
        </button>
      )}
    </section>
  );
}

/** How often a video frame is decoded. */
const SCAN_EVERY_MS = 250;

interface Detector {
  detect(source: CanvasImageSource): Promise<{ rawValue: string }[]>;
}

/** The camera, decoding QR codes with the browser's BarcodeDetector where it has one, else
 *  with `../qr` (loaded only then). */
function Scanner({ onCode, onClose }: { onCode: (code: string) => void; onClose: () => void }) {
  const video = useRef<HTMLVideoElement>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stream: MediaStream | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const canvas = document.createElement("canvas");
    const run = async () => {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      } catch {
        setError(
          window.isSecureContext
            ? "The camera is not available: allow it in the browser, or paste the link instead."
            : "The camera needs the app over https (or on localhost): scan the QR with the phone's camera app, or paste the link instead.",
        );
        return;
      }
      const node = video.current;
      if (!node || stopped) return;
      node.srcObject = stream;
      await node.play().catch(() => undefined);
      const Native = (globalThis as { BarcodeDetector?: new (options: { formats: string[] }) => Detector }).BarcodeDetector;
      const detector = Native ? new Native({ formats: ["qr_code"] }) : null;
      const decodeFrame = detector ? null : (await import("../qr")).decodeFrame;
      const tick = async () => {
        if (stopped) return;
        let code: string | null = null;
        if (detector) {
          const found = await detector.detect(node).catch(() => []);
          code = found[0]?.rawValue ?? null;
        } else if (decodeFrame && node.videoWidth > 0) {
          canvas.width = node.videoWidth;
          canvas.height = node.videoHeight;
          const context = canvas.getContext("2d", { willReadFrequently: true });
          if (context) {
            context.drawImage(node, 0, 0);
            const image = context.getImageData(0, 0, canvas.width, canvas.height);
            code = decodeFrame(image);
          }
        }
        if (code && !stopped) onCode(code);
        else timer = setTimeout(tick, SCAN_EVERY_MS);
      };
      void tick();
    };
    void run();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      stream?.getTracks().forEach((track) => track.stop());
    };
  }, []);
  return (
    <div class="scanner">
      <video ref={video} muted playsInline aria-label="Camera" />
      {error && (
        <p class="error" role="alert">
          {revealPlain(error)}
        </p>
      )}
      <button type="button" onClick={onClose}>
        Close the camera
      </button>
    </div>
  );
}
