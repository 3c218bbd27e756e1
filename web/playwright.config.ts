// Playwright: unit tests of the pure modules (node), and the app end to end in Debian's
// Chromium at a phone's size against real relay and daemon processes on 127.0.0.1.

import { defineConfig, devices } from "@playwright/test";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "tests",
  outputDir: "test-results/artifacts",
  // The machine has two cores shared with the relay, the daemons and their agents.
  workers: 1,
  fullyParallel: false,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 20_000 },
  reporter: [["list"]],
  projects: [
    { name: "unit", testDir: "tests/unit" },
    {
      name: "phone",
      testDir: "tests/e2e",
      use: {
        ...devices["Pixel 7"],
        browserName: "chromium",
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 2,
        isMobile: true,
        hasTouch: true,
        colorScheme: "dark",
        serviceWorkers: "allow",
        trace: "retain-on-failure",
        launchOptions: {
          executablePath: CHROMIUM,
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
          ],
        },
      },
    },
  ],
});
