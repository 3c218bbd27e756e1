//! Fixes the `--version` text at build time: the target triple and the git commit (see
//! src/version.rs; the root build.rs does the same for `muxagent`), and embeds the web app:
//! `../web/dist`, gzip-only, as the table `src/assets.rs` serves (see build/web.rs).

use std::path::Path;
use std::process::Command;

#[path = "build/web.rs"]
mod web;

fn main() {
    embed_web();
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MUXAGENT_BUILD_TARGET={target}");
    println!("cargo:rerun-if-env-changed=MUXAGENT_BUILD_COMMIT");
    let commit = match std::env::var("MUXAGENT_BUILD_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => git_commit().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=MUXAGENT_BUILD_COMMIT={commit}");
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

/// The short hash of HEAD, and the files whose change means a new commit (HEAD, the branch it
/// points to, packed-refs) as rerun-if-changed, so a commit rebuilds this and nothing else does.
fn git_commit() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = Path::new(&dir).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}
