// Stand-in for the web app's bundle: the web app's build replaces this file.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" });
}
document.getElementById("app").textContent = "muxagent: stand-in build of web/dist";
