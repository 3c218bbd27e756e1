//! Fixes the `--version` text at build time: the target triple and the git commit (see
//! build/info.rs, which the root build.rs shares for `muxagent`), and embeds the web app:
//! `../web/dist`, gzip-only, as the table `src/assets.rs` serves (see build/web.rs).

use std::path::Path;

#[path = "build/info.rs"]
mod info;
#[path = "build/web.rs"]
mod web;

fn main() {
    embed_web();
    info::emit();
}

/// Write `$OUT_DIR/web_assets.rs` from `../web/dist`, or fail the build saying what to run.
fn embed_web() {
    let (Ok(manifest_dir), Ok(out_dir)) = (
        std::env::var("CARGO_MANIFEST_DIR"),
        std::env::var("OUT_DIR"),
    ) else {
        println!("cargo::error=CARGO_MANIFEST_DIR or OUT_DIR is not set: run this through cargo");
        return;
    };
    let manifest_dir = Path::new(&manifest_dir);
    let dist = manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("web")
        .join("dist");
    // A folder: cargo looks at every file under it. Missing: cargo reruns this every build,
    // so the build that follows the web build picks it up.
    println!("cargo:rerun-if-changed=../web/dist");
    let out_dir = Path::new(&out_dir);
    let result = web::collect(&dist, out_dir).and_then(|found| {
        let table = out_dir.join("web_assets.rs");
        std::fs::write(&table, web::table_source(&found.files))
            .map_err(|e| format!("{}: {e}", table.display()))
    });
    if let Err(why) = result {
        println!("cargo::error={}", why.replace('\n', " "));
    }
}
