// The relay connection, always visible: online, connecting, reconnecting in N s, or offline,
// with the reason when there is one. Offline (the browser's or the relay's) also says that what
// is shown is the saved state.

import { browserOffline, now, view } from "../state";

export function ConnectionBar() {
  const v = view.value;
  const connection = v?.connection;
  let state: string;
  let text: string;
  if (browserOffline.value) {
    state = "offline";
    text = "Offline — showing saved state";
  } else if (!connection) {
    state = "connecting";
    text = "Starting…";
  } else {
    state = connection.state;
    switch (connection.state) {
      case "online":
        text = "Online";
        break;
      case "connecting":
        text = "Connecting…";
        break;
      case "reconnecting": {
        const seconds = connection.retryAt ? Math.max(0, Math.ceil((connection.retryAt - now.value) / 1000)) : 0;
        text = seconds > 0 ? `Reconnecting in ${seconds} s` : "Reconnecting…";
        break;
      }
      case "offline":
        text = "Offline — showing saved state";
        break;
      case "revoked":
        text = "Revoked";
        break;
    }
  }
  const detail = state !== "online" && connection?.detail ? connection.detail : null;
  return (
    <div class={"conn conn-" + state} role="status" aria-label={"Connection: " + text}>
      <span class="conn-dot" aria-hidden="true" />
      <span class="conn-text">{text}</span>
      {detail && <span class="conn-detail">{detail}</span>}
    </div>
  );
}
