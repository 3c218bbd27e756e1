// The types of web/core's wasm-bindgen glue (`--target web`), which the build aliases as
// `muxagent-core`. The glue's own .d.ts types the core as `any`; these are the contract's.

import type { NoticeOutcome, StartCore } from "./contract";

/** Instantiate the wasm module from `module_or_path` (the build passes the hashed URL; the
 *  service worker its precached response). */
export default function init(options?: { module_or_path?: string | URL | Request | Response | Promise<Response> }): Promise<unknown>;

/** See the contract's StartCore. */
export const start: StartCore;

/** Decide a notification's approval from the service worker: connect, sign over the hash
 *  recomputed from the notice's exact input, send, wait for the answer, close. */
export function actOnNotice(notice: unknown, allow: boolean, timeoutMs: number): Promise<NoticeOutcome>;
