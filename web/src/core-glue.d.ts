// The types of web/core's wasm-bindgen glue (`--target web`), which the build aliases as
// `muxagent-core`. The glue's own .d.ts types the core as `any`; these are the contract's.

import type { StartCore } from "./contract";

/** Instantiate the wasm module from `module_or_path` (the build passes the hashed URL). */
export default function init(options?: { module_or_path?: string | URL | Request }): Promise<unknown>;

/** See the contract's StartCore. */
export const start: StartCore;
