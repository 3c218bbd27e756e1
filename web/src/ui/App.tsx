// The frame around every screen: the header with the connection, the screen for the route, the
// tab bar, and the polite live region that announces new approvals.

import { announcement, fatal, inboxCount, route, view } from "../state";
import { href, type Route } from "../route";
import { ConnectionBar } from "./ConnectionBar";
import { Machines } from "./Machines";
import { Inbox } from "./Inbox";
import { SessionScreen } from "./Session";
import { NewSession } from "./NewSession";
import { Handoff } from "./NewSession";
import { Settings } from "./Settings";
import { Pair } from "./Pair";
import { Revoked } from "./Revoked";

export function App() {
  const r = route.value;
  const revoked = view.value?.connection.state === "revoked";
  return (
    <>
      <header class="top">
        <h1 class="brand">muxagent</h1>
        <ConnectionBar />
      </header>
      <main id="main">
        <Screen route={r} />
      </main>
      {!revoked && <Tabs current={r.screen} />}
      <div class="sr-only" role="log" aria-live="polite" aria-label="Announcements">
        {announcement.value}
      </div>
    </>
  );
}

function Screen({ route: r }: { route: Route }) {
  if (fatal.value) {
    return (
      <section class="screen">
        <h2>The app could not start</h2>
        <p class="error" role="alert">{fatal.value}</p>
      </section>
    );
  }
  if (view.value?.connection.state === "revoked") return <Revoked />;
  if (r.screen === "pair") return <Pair />;
  if (!view.value?.loaded) {
    return (
      <section class="screen" aria-busy="true">
        <p class="muted">Loading…</p>
      </section>
    );
  }
  switch (r.screen) {
    case "machines":
      return <Machines />;
    case "inbox":
      return <Inbox focus={r.machine && r.session ? { machine: r.machine, session: r.session } : undefined} />;
    case "session":
      return <SessionScreen key={r.machine + r.session} machine={r.machine} session={r.session} />;
    case "new":
      return <NewSession machine={r.machine} />;
    case "handoff":
      return <Handoff machine={r.machine} session={r.session} />;
    case "settings":
      return <Settings />;
  }
}

function Tabs({ current }: { current: Route["screen"] }) {
  const count = inboxCount.value;
  const tab = (screen: Route["screen"], to: Route, label: string, name = label) => (
    <a href={href(to)} class="tab" aria-current={current === screen ? "page" : undefined} aria-label={name}>
      {label}
      {screen === "inbox" && count > 0 && <span class="badge" aria-hidden="true">{count}</span>}
    </a>
  );
  return (
    <nav class="tabs" aria-label="Screens">
      {tab("machines", { screen: "machines" }, "Machines")}
      {tab("inbox", { screen: "inbox" }, "Approvals", count > 0 ? `Approvals, ${count} waiting` : "Approvals")}
      {tab("new", { screen: "new" }, "New")}
      {tab("settings", { screen: "settings" }, "Settings")}
    </nav>
  );
}
