// The entry: render the frame at once (the cached state follows as soon as the core has read
// IndexedDB), load the core, pair if this page is a `/pair#TICKET` link, and register the
// service worker that keeps the app openable offline and shows notifications.

import { render } from "preact";
import "./style.css";
import { loadCore } from "./core";
import { href, parseRoute, ticketInLocation } from "./route";
import { fatal, messageOf, pairWith, route, start } from "./state";
import { App } from "./ui/App";

const root = document.getElementById("app");
if (root) render(<App />, root);

// Take the ticket out of the address bar before anything else: it is single-use, and a reload
// or a shared screenshot should not carry it.
const ticket = ticketInLocation(location);
const link = ticket ? location.href : null;
if (ticket) {
  history.replaceState(null, "", "/" + href({ screen: "pair" }));
  route.value = parseRoute(location.hash);
}

loadCore().then(
  (core) => {
    start(core);
    if (link) void pairWith(link);
  },
  (error) => {
    fatal.value = messageOf(error);
  },
);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => undefined);
  // A tap on a notification while the app is open: the worker names the screen to show.
  navigator.serviceWorker.addEventListener("message", (event: MessageEvent) => {
    const data = event.data as { type?: unknown; hash?: unknown } | null;
    if (data?.type === "muxagent-open" && typeof data.hash === "string" && data.hash.startsWith("#/")) location.hash = data.hash;
  });
}
