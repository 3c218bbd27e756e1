// Hash routes: the relay serves the same page at `/` and `/pair`, so every screen lives in the
// fragment, except a pairing link's ticket, which is the whole fragment of `/pair#TICKET`.

export type Route =
  | { screen: "machines" }
  /** `machine`/`session`: the cards of that session first in view (a notification's tap). */
  | { screen: "inbox"; machine?: string; session?: string }
  | { screen: "session"; machine: string; session: string }
  | { screen: "new"; machine?: string }
  | { screen: "handoff"; machine: string; session: string }
  | { screen: "settings" }
  | { screen: "pair" };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [first, second, third, fourth] = parts;
  switch (first) {
    case "inbox":
      return second && third ? { screen: "inbox", machine: second, session: third } : { screen: "inbox" };
    case "m":
      if (second && third === "s" && fourth) return { screen: "session", machine: second, session: fourth };
      return { screen: "machines" };
    case "new":
      return second ? { screen: "new", machine: second } : { screen: "new" };
    case "handoff":
      if (second && third) return { screen: "handoff", machine: second, session: third };
      return { screen: "machines" };
    case "settings":
      return { screen: "settings" };
    case "pair":
      return { screen: "pair" };
    default:
      return { screen: "machines" };
  }
}

export function href(route: Route): string {
  switch (route.screen) {
    case "machines":
      return "#/";
    case "inbox":
      return route.machine && route.session ? `#/inbox/${route.machine}/${route.session}` : "#/inbox";
    case "session":
      return `#/m/${route.machine}/s/${route.session}`;
    case "new":
      return route.machine ? `#/new/${route.machine}` : "#/new";
    case "handoff":
      return `#/handoff/${route.machine}/${route.session}`;
    case "settings":
      return "#/settings";
    case "pair":
      return "#/pair";
  }
}

/** The ticket of a pairing link opened in this page (`/pair#TICKET`), if any. */
export function ticketInLocation(loc: { pathname: string; hash: string }): string | null {
  if (!/\/pair\/?$/.test(loc.pathname)) return null;
  const ticket = loc.hash.replace(/^#/, "");
  return ticket && !ticket.startsWith("/") ? ticket : null;
}
