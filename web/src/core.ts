// Loading the wasm core. The build copies the .wasm to a content-hashed URL and defines it.

import type { Core } from "./contract";
import init, { start } from "muxagent-core";

declare const CORE_WASM_URL: string;

export async function loadCore(): Promise<Core> {
  await init({ module_or_path: CORE_WASM_URL });
  return start();
}
