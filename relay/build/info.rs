//! The build information both programs print with `--version` (`relay/src/version.rs`): the
//! target triple and the git commit, as `MUXAGENT_BUILD_TARGET` and `MUXAGENT_BUILD_COMMIT`.
//! Shared by relay/build.rs and the root build.rs (`#[path]`), so there is one copy.

use std::path::Path;
use std::process::Command;

/// Tell cargo the target and the commit (`MUXAGENT_BUILD_COMMIT` from the environment wins,
/// for builds from a tarball; else the git HEAD; else "unknown").
pub fn emit() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MUXAGENT_BUILD_TARGET={target}");
    println!("cargo:rerun-if-env-changed=MUXAGENT_BUILD_COMMIT");
    let commit = match std::env::var("MUXAGENT_BUILD_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => git_commit().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=MUXAGENT_BUILD_COMMIT={commit}");
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
