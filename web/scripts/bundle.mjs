// Bundles the UI into a dist folder: content-hashed assets, the page, the service worker with
// its precache list, the manifest and icons, a .gz of every file, and SOURCE (what it was built
// from). Byte-for-byte reproducible: esbuild's output is deterministic, names come from content
// hashes, gzip has no name or time in it, and every list is sorted.
//
//   node scripts/bundle.mjs CORE_DIR OUT_DIR
//
// CORE_DIR holds the wasm core as wasm-bindgen (`--target web`) wrote it: one NAME.js glue file
// and its NAME_bg.wasm.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync, constants } from "node:zlib";
import * as esbuild from "esbuild";

const web = dirname(dirname(fileURLToPath(import.meta.url)));
const root = dirname(web);
const [coreArg, outArg] = process.argv.slice(2);
if (!coreArg || !outArg) {
  console.error("usage: node scripts/bundle.mjs CORE_DIR OUT_DIR");
  process.exit(2);
}
const coreDir = coreArg;
const out = outArg;

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const short = (bytes) => sha256(bytes).slice(0, 12);

// ---- the wasm core ----
const glue = readdirSync(coreDir)
  .filter((name) => name.endsWith(".js") && existsSync(join(coreDir, name.replace(/\.js$/, "_bg.wasm"))))
  .sort();
if (glue.length !== 1) {
  console.error(`build: expected one wasm-bindgen glue file (NAME.js beside NAME_bg.wasm) in ${coreDir}, found ${glue.length}`);
  process.exit(1);
}
const gluePath = join(coreDir, glue[0]);
const wasm = readFileSync(gluePath.replace(/\.js$/, "_bg.wasm"));
const wasmName = `assets/core-${short(wasm)}.wasm`;

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
const files = new Map(); // path in dist → bytes
files.set(wasmName, wasm);

// ---- the UI ----
const ui = await esbuild.build({
  absWorkingDir: web,
  entryPoints: { app: "src/main.tsx" },
  bundle: true,
  splitting: true,
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  jsx: "automatic",
  jsxImportSource: "preact",
  alias: { "muxagent-core": gluePath },
  define: { CORE_WASM_URL: JSON.stringify("/" + wasmName) },
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  outdir: "assets",
  publicPath: "/assets",
  write: false,
  metafile: true,
  logLevel: "warning",
});
let js = null;
let css = null;
for (const file of ui.outputFiles) {
  const name = "assets/" + relative(join(web, "assets"), file.path);
  files.set(name, Buffer.from(file.contents));
  const meta = ui.metafile.outputs[relative(web, file.path)];
  if (meta?.entryPoint === "src/main.tsx" && name.endsWith(".js")) js = name;
  if (name.endsWith(".css")) css = name;
}
if (!js || !css) throw new Error("esbuild produced no entry JS or CSS");

// ---- static files ----
const html = readFileSync(join(web, "src/index.html"), "utf8").replace("{{JS}}", "/" + js).replace("{{CSS}}", "/" + css);
files.set("index.html", Buffer.from(html));
files.set("manifest.webmanifest", readFileSync(join(web, "src/manifest.webmanifest")));
for (const icon of readdirSync(join(web, "public")).sort()) files.set(icon, readFileSync(join(web, "public", icon)));

// ---- the service worker ----
// The QR decoder (src/qr.ts) is left out: it is loaded only to scan a QR code without the
// browser's BarcodeDetector, and pairing needs the network anyway.
const shell = ["/", ...[...files.keys()].filter((name) => name !== "index.html" && !/^assets\/qr-/.test(name)).sort().map((name) => "/" + name)];
// It bundles the wasm core's glue too (a notification's Allow/Deny runs the core), as a classic
// worker: the glue's `import.meta.url` only names the default wasm path, which is never used.
const sw = await esbuild.build({
  absWorkingDir: web,
  entryPoints: ["src/sw.ts"],
  bundle: true,
  format: "iife",
  target: "es2020",
  minify: true,
  legalComments: "none",
  alias: { "muxagent-core": gluePath },
  define: {
    PRECACHE: JSON.stringify(shell),
    VERSION: JSON.stringify(short(shell.join("\n") + [...files.values()].map(short).join(""))),
    CORE_WASM_URL: JSON.stringify("/" + wasmName),
    "import.meta.url": JSON.stringify("/sw.js"),
  },
  write: false,
  logLevel: "warning",
});
files.set("sw.js", Buffer.from(sw.outputFiles[0].contents));

// ---- SOURCE: what this was built from ----
files.set("SOURCE", Buffer.from(source()));

// ---- write, with a .gz of each ----
const sizes = [];
for (const name of [...files.keys()].sort()) {
  const bytes = files.get(name);
  const gz = gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(out, name), bytes);
  writeFileSync(join(out, name + ".gz"), gz);
  sizes.push({ name, raw: bytes.length, gz: gz.length });
}
report(sizes);

/** Sizes per file, and the whole app gzipped (SOURCE is not shipped to browsers). */
function report(rows) {
  const app = rows.filter((row) => row.name !== "SOURCE");
  const width = Math.max(...app.map((row) => row.name.length));
  for (const row of app) console.log(`  ${row.name.padEnd(width)}  ${String(row.raw).padStart(8)} B  ${String(row.gz).padStart(7)} B gzip`);
  const kinds = {};
  for (const row of app) {
    const kind = row.name.split(".").pop();
    kinds[kind] = (kinds[kind] ?? 0) + row.gz;
  }
  console.log("  gzip by kind: " + Object.entries(kinds).sort().map(([k, v]) => `${k} ${(v / 1024).toFixed(1)} KB`).join(", "));
  console.log(`  whole app: ${(app.reduce((sum, row) => sum + row.gz, 0) / 1024).toFixed(1)} KB gzip`);
}

function source() {
  const lines = ["# What web/dist was built from (web/build). Hashes are SHA-256."];
  const tracked = (paths) =>
    execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", ...paths], { cwd: root })
      .toString()
      .split("\0")
      .filter((path) => path && existsSync(join(root, path)) && statSync(join(root, path)).isFile())
      .sort();
  const tree = (paths) => {
    const hash = createHash("sha256");
    for (const path of tracked(paths)) hash.update(path + "\0" + sha256(readFileSync(join(root, path))) + "\n");
    return hash.digest("hex");
  };
  lines.push(`web/src ${tree(["web/src", "web/public", "web/scripts"])}`);
  lines.push(`web/core ${tree(["web/core"])}`);
  lines.push(`client ${tree(["client"])}`);
  lines.push(`proto ${tree(["proto"])}`);
  for (const lock of ["web/package-lock.json", "Cargo.lock"]) {
    lines.push(`${lock} ${existsSync(join(root, lock)) ? sha256(readFileSync(join(root, lock))) : "absent"}`);
  }
  lines.push(`core.wasm ${sha256(wasm)}`);
  lines.push(`node ${process.version}`);
  lines.push(`esbuild ${esbuild.version}`);
  // The tools web/build-core uses: Debian's rustc (rustc-web) and its pinned wasm-bindgen.
  const tools = process.env.MUXAGENT_TOOLS ?? join(process.env.HOME ?? "/root", ".cache/muxagent/tools");
  for (const [name, command] of [
    ["rustc", ["/usr/bin/rustc", "--version"]],
    ["wasm-bindgen", [join(tools, "bin/wasm-bindgen"), "--version"]],
  ]) {
    let version = "absent";
    try {
      version = execFileSync(command[0], command.slice(1), { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    } catch {}
    lines.push(`${name} ${version}`);
  }
  return lines.join("\n") + "\n";
}
