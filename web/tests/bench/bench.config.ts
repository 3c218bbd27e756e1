// Playwright for web/bench: the phone project of playwright.config.ts (Debian's Chromium at
// 390×844 with touch), with exact heap numbers, running only tests/bench/*.bench.ts. Not part
// of web/test.

import { defineConfig } from "@playwright/test";
import base from "../../playwright.config";

const phone = base.projects?.find((p) => p.name === "phone")?.use ?? {};
const args = phone.launchOptions?.args ?? [];

export default defineConfig({
  testDir: ".",
  testMatch: "*.bench.ts",
  outputDir: "../../test-results/bench",
  workers: 1,
  retries: 0,
  // Pairing five machines, 10,000 events streamed, scrolled end to end several times.
  timeout: 20 * 60_000,
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  projects: [
    {
      name: "bench",
      use: {
        ...phone,
        trace: "off",
        launchOptions: { ...phone.launchOptions, args: [...args, "--enable-precise-memory-info"] },
      },
    },
  ],
});
