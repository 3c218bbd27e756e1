//! build.rs's web module on made-up `web/dist` folders: what it embeds, what it gzips itself,
//! and the builds it refuses, with messages that say what to do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

#[allow(dead_code)]
#[path = "../build/web.rs"]
mod web;

use std::io::{Read as _, Write as _};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

fn put(dir: &Path, path: &str, bytes: &[u8]) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A dist folder with index.html and its .gz, and an output folder.
fn folders() -> (tempfile::TempDir, tempfile::TempDir) {
    let dist = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("temp dir");
    put(dist.path(), "index.html", b"<!doctype html>");
    put(dist.path(), "index.html.gz", &gz(b"<!doctype html>"));
    (dist, out)
}

fn error(dist: &Path, out: &Path) -> String {
    match web::collect(dist, out) {
        Ok(found) => panic!("accepted: {found:?}"),
        Err(why) => why,
    }
}

#[test]
fn a_missing_build_says_what_to_run() {
    let out = tempfile::tempdir().expect("temp dir");
    let missing = out.path().join("web/dist");
    let why = error(&missing, out.path());
    assert!(why.contains("has no index.html"), "{why}");
    assert!(why.contains(web::WEB_BUILD_COMMAND), "{why}");
    let empty = tempfile::tempdir().expect("temp dir");
    put(empty.path(), "assets/app-1.js", b"x");
    assert!(error(empty.path(), out.path()).contains("has no index.html"));
}

#[test]
fn files_without_gz_are_gzipped_into_out_dir() {
    let (dist, out) = folders();
    let wasm = b"\0asm\x01\0\0\0 not really a module".repeat(50);
    put(dist.path(), "assets/core-9f8e7d6c.wasm", &wasm);
    put(dist.path(), "assets/icon-00ff00ff.svg", b"<svg/>");
    put(dist.path(), "sw.js", b"self.skipWaiting()");
    let found = web::collect(dist.path(), out.path()).expect("a good dist");
    assert_eq!(
        found.gzipped_here,
        [
            "assets/core-9f8e7d6c.wasm",
            "assets/icon-00ff00ff.svg",
            "sw.js"
        ]
    );
    let paths: Vec<_> = found.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "assets/core-9f8e7d6c.wasm",
            "assets/icon-00ff00ff.svg",
            "index.html",
            "sw.js"
        ]
    );
    let core = &found.files[0];
    assert_eq!(core.content_type, "application/wasm");
    assert!(core.immutable);
    assert_eq!(
        core.gzip_file,
        out.path().join("web/assets/core-9f8e7d6c.wasm.gz")
    );
    let written = std::fs::read(&core.gzip_file).expect("the gzip written");
    assert_eq!(written.len(), core.gzip_len);
    assert!(core.gzip_len < wasm.len(), "compressed");
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(written.as_slice())
        .read_to_end(&mut inflated)
        .expect("gunzip");
    assert_eq!(inflated, wasm);
    assert_eq!(core.len, wasm.len());
    let index = &found.files[2];
    assert_eq!(index.gzip_file, dist.path().join("index.html.gz"));
    assert!(!index.immutable);
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    assert_eq!(found.files[1].content_type, "image/svg+xml");
    assert_eq!(index.etag_identity, web::etag(b"<!doctype html>"));
    assert_ne!(index.etag_identity, index.etag_gzip);

    let table = web::table_source(&found.files);
    assert!(
        table.contains("pub(crate) static ASSETS: [Asset; 4]"),
        "{table}"
    );
    assert!(table.contains(&format!("{:?}", core.gzip_file.display().to_string())));
    assert!(table.contains("cache: Cache::Immutable"));
}

#[test]
fn hidden_files_and_brotli_siblings_are_left_out() {
    let (dist, out) = folders();
    put(dist.path(), ".DS_Store", b"junk");
    put(dist.path(), ".vite/manifest.json", b"{}");
    put(dist.path(), "index.html.br", b"brotli");
    let found = web::collect(dist.path(), out.path()).expect("a good dist");
    let paths: Vec<_> = found.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["index.html"]);
}

#[test]
fn gzip_headers_with_a_name_and_extra_field_are_understood() {
    let data = b"body { color: red }".repeat(10);
    let mut encoder = flate2::GzBuilder::new()
        .filename("app.css")
        .comment("made by a test")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), Compression::best());
    encoder.write_all(&data).expect("gzip");
    let gz = encoder.finish().expect("gzip");
    let (start, end) = web::check_gzip(&gz, &data).expect("valid");
    let header = 10 + 2 + 3 + "app.css".len() + 1 + "made by a test".len() + 1;
    assert_eq!((start, end), (header, gz.len() - 8));
}

#[test]
fn a_gz_that_is_not_its_file_fails_the_build() {
    let (dist, out) = folders();
    put(dist.path(), "sw.js", b"new worker");
    put(dist.path(), "sw.js.gz", &gz(b"old worker"));
    let why = error(dist.path(), out.path());
    assert!(why.contains("sw.js.gz") && why.contains("stale"), "{why}");

    put(dist.path(), "sw.js.gz", b"not gzip at all");
    assert!(error(dist.path(), out.path()).contains("not a gzip file"));

    let mut two = gz(b"new ");
    two.extend(gz(b"worker"));
    put(dist.path(), "sw.js.gz", &two);
    let why = error(dist.path(), out.path());
    assert!(why.contains("sw.js.gz"), "{why}");

    let mut bad_trailer = gz(b"new worker");
    let at = bad_trailer.len() - 8;
    bad_trailer[at] ^= 1;
    put(dist.path(), "sw.js.gz", &bad_trailer);
    assert!(error(dist.path(), out.path()).contains("trailer"));

    put(dist.path(), "sw.js.gz", &gz(b"new worker")[..12]);
    assert!(error(dist.path(), out.path()).contains("sw.js.gz"));
}

#[test]
fn a_gz_without_its_file_fails_the_build() {
    let (dist, out) = folders();
    put(dist.path(), "assets/gone-12345678.js.gz", &gz(b"x"));
    let why = error(dist.path(), out.path());
    assert!(
        why.contains("has no assets/gone-12345678.js beside it"),
        "{why}"
    );
}

#[test]
fn names_that_need_encoding_fail_the_build() {
    for name in ["my file.js", "a%2e.js", "caf\u{e9}.css", "x+y.js", "q?.js"] {
        let (dist, out) = folders();
        put(dist.path(), name, b"x");
        let why = error(dist.path(), out.path());
        assert!(why.contains("A-Z a-z 0-9 . _ - ~ only"), "{name}: {why}");
    }
}

#[test]
fn unknown_extensions_fail_the_build() {
    for name in ["data.bin", "Makefile", "icon.PNG"] {
        let (dist, out) = folders();
        put(dist.path(), name, b"x");
        let why = error(dist.path(), out.path());
        assert!(why.contains("no content type is known"), "{name}: {why}");
    }
}

#[test]
fn content_types() {
    for (path, expected) in [
        ("index.html", "text/html; charset=utf-8"),
        ("sw.js", "text/javascript; charset=utf-8"),
        ("assets/a-1.mjs", "text/javascript; charset=utf-8"),
        ("assets/a-1.css", "text/css; charset=utf-8"),
        ("assets/core-1.wasm", "application/wasm"),
        ("manifest.webmanifest", "application/manifest+json"),
        ("assets/a-1.svg", "image/svg+xml"),
        ("assets/a-1.png", "image/png"),
        ("assets/a-1.woff2", "font/woff2"),
        ("robots.txt", "text/plain; charset=utf-8"),
    ] {
        assert_eq!(web::content_type(path), Ok(expected), "{path}");
    }
}

#[test]
fn oversized_files_and_too_many_files_fail_the_build() {
    let (dist, out) = folders();
    let big = std::fs::File::create(dist.path().join("big.txt")).expect("create");
    big.set_len(web::MAX_FILE_LEN + 1).expect("sparse file");
    assert!(error(dist.path(), out.path()).contains("over the"));

    let (dist, out) = folders();
    for i in 0..web::MAX_FILES {
        put(dist.path(), &format!("assets/f-{i}.txt"), b"");
    }
    assert!(error(dist.path(), out.path()).contains("more than"));
}
