//! The web app, embedded gzip-only: walk `web/dist`, check every file, gzip the ones the web
//! build left without a `.gz` sibling, and write the table `src/assets.rs` includes.
//!
//! Used by `build.rs` and, through `#[path]`, by `tests/web_build.rs`. Everything here returns
//! errors as sentences for the person running the build; `build.rs` turns them into
//! `cargo::error`.
//!
//! Rules, so that serving is a lookup in a fixed table and nothing else:
//! - every regular file is served at its path under `web/dist` (`/` separated);
//! - `FILE.gz` is FILE's gzip representation, not a file of its own; it must decompress to
//!   exactly FILE (a stale `.gz` fails the build); a `.gz` without its FILE fails too;
//! - hidden files (a name starting with `.`), `.br` siblings and the build's record of its
//!   sources (`SOURCE`, for CI's staleness check, not for browsers) are skipped;
//! - names use `A-Z a-z 0-9 . _ - ~` only, so a request path matches a table key byte for byte
//!   and needs no percent-decoding, and `..` cannot be a name;
//! - the extension picks the content type; an unknown one fails the build rather than be served
//!   as something a browser would refuse;
//! - files under `assets/` are content-addressed (their names carry a hash) and cached for a
//!   year; every other file is revalidated on each use.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use blake2::{Blake2s256, Digest as _};
use flate2::Compression;
use flate2::write::GzEncoder;

/// Files of `web/dist` that are not part of the app.
const SKIPPED: [&str; 2] = ["SOURCE", "SOURCE.gz"];

/// The command that produces `web/dist` (named in the error when it is missing).
pub const WEB_BUILD_COMMAND: &str = "web/build";

/// Largest file (uncompressed) the relay embeds. A client that does not accept gzip gets the
/// file inflated once and kept in memory, so the sum of these is what such clients can make a
/// relay hold; the web app's largest file, its wasm core, is well under a megabyte gzipped.
pub const MAX_FILE_LEN: u64 = 16 << 20;

/// Files embedded at most: the table is searched per request, and a dist folder with more
/// files than this is a build gone wrong (source maps of every dependency, say).
pub const MAX_FILES: usize = 1024;

/// One file of the web app, ready to be written into the table.
#[derive(Debug)]
pub struct WebFile {
    /// The request path without its leading `/` (`assets/app-0123abcd.js`).
    pub path: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Content-addressed (under `assets/`): cached for a year, immutable.
    pub immutable: bool,
    /// The gzip file to embed: the web build's `.gz`, or one written to `OUT_DIR`.
    pub gzip_file: PathBuf,
    /// Length of the gzip file.
    pub gzip_len: usize,
    /// Where the raw deflate stream lies inside the gzip file (between header and trailer).
    pub deflate: (usize, usize),
    /// Length of the file itself (the identity body).
    pub len: usize,
    /// Strong ETag of the identity body, quotes included.
    pub etag_identity: String,
    /// Strong ETag of the gzip body, quotes included.
    pub etag_gzip: String,
}

/// What a build finds in `dist`: its files sorted by path, and the paths to watch.
#[derive(Debug)]
pub struct Dist {
    /// Every file, sorted by `path` (the table is binary-searched).
    pub files: Vec<WebFile>,
    /// Files the web build left without a `.gz` (gzipped here, into `OUT_DIR`).
    #[allow(dead_code)] // build.rs needs no list; tests/web_build.rs checks it
    pub gzipped_here: Vec<String>,
}

/// Read `dist`, check it, and gzip into `out_dir` what lacks a `.gz`.
pub fn collect(dist: &Path, out_dir: &Path) -> Result<Dist, String> {
    if !dist.join("index.html").is_file() {
        return Err(format!(
            "{} has no index.html: the relay embeds the web app's build output and it is not \
             there. Build the web app first ({WEB_BUILD_COMMAND}), then build the relay again.",
            dist.display()
        ));
    }
    let mut sources = Vec::new();
    walk(dist, "", &mut sources)?;
    sources.sort();
    let mut files = Vec::new();
    let mut gzipped_here = Vec::new();
    for path in sources.iter().filter(|p| !p.ends_with(".gz")) {
        if files.len() == MAX_FILES {
            return Err(format!(
                "{} has more than {MAX_FILES} files to embed; is something besides the web \
                 app's build output in it?",
                dist.display()
            ));
        }
        let source = dist.join(path);
        let data = read(&source)?;
        let gz_name = format!("{path}.gz");
        let (gzip_file, gz) = if sources.binary_search(&gz_name).is_ok() {
            let file = dist.join(&gz_name);
            let gz = read(&file)?;
            (file, gz)
        } else {
            let file = out_dir.join("web").join(&gz_name);
            let gz = gzip(&data);
            write(&file, &gz)?;
            gzipped_here.push(path.clone());
            (file, gz)
        };
        let deflate =
            check_gzip(&gz, &data).map_err(|why| format!("{}: {why}", gzip_file.display()))?;
        files.push(WebFile {
            content_type: content_type(path)?,
            immutable: path.starts_with("assets/"),
            gzip_file,
            gzip_len: gz.len(),
            deflate,
            len: data.len(),
            etag_identity: etag(&data),
            etag_gzip: etag(&gz),
            path: path.clone(),
        });
    }
    for gz in sources.iter().filter(|p| p.ends_with(".gz")) {
        let original = &gz[..gz.len() - 3];
        if sources
            .binary_search_by(|p| p.as_str().cmp(original))
            .is_err()
        {
            return Err(format!(
                "{} has no {original} beside it: a .gz in web/dist is the compressed form of \
                 the file of the same name, and that file is missing",
                dist.join(gz).display()
            ));
        }
    }
    Ok(Dist {
        files,
        gzipped_here,
    })
}

/// Every regular file under `dir`, as `/`-separated paths relative to the dist root.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(format!(
                "{}: a file name that is not UTF-8 cannot be served",
                entry.path().display()
            ));
        };
        if name.starts_with('.') || name.ends_with(".br") || SKIPPED.contains(&name) {
            continue;
        }
        if !name.bytes().all(safe_byte) {
            return Err(format!(
                "{}: name the web app's files with A-Z a-z 0-9 . _ - ~ only (the relay matches \
                 request paths byte for byte and does not percent-decode)",
                entry.path().display()
            ));
        }
        let path = format!("{prefix}{name}");
        // Follows symlinks: a link in dist is served as what it points to.
        let meta = std::fs::metadata(entry.path())
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            walk(&entry.path(), &format!("{path}/"), out)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_LEN {
                return Err(format!(
                    "{} is {} bytes, over the {MAX_FILE_LEN} bytes the relay embeds per file",
                    entry.path().display(),
                    meta.len()
                ));
            }
            out.push(path);
        }
    }
    Ok(())
}

/// A byte allowed in a file name: RFC 3986 unreserved, so no client percent-encodes it.
pub fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~')
}

/// The `Content-Type` for `path`, by its extension.
pub fn content_type(path: &str) -> Result<&'static str, String> {
    let ext = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    Ok(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        // `WebAssembly.instantiateStreaming` refuses any other type.
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => {
            return Err(format!(
                "web/dist/{path}: no content type is known for this extension; add it to \
                 content_type in relay/build/web.rs"
            ));
        }
    })
}

/// gzip `data` at the best compression (it is done once per build).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut encoder, data);
    encoder.finish().unwrap_or_default()
}

/// Check that `gz` is one gzip member (RFC 1952) whose content is exactly `data`; return where
/// its deflate stream lies, for the relay to inflate without parsing headers at run time.
pub fn check_gzip(gz: &[u8], data: &[u8]) -> Result<(usize, usize), String> {
    let start = gzip_header_len(gz)?;
    let end = gz
        .len()
        .checked_sub(8)
        .filter(|&end| end >= start)
        .ok_or("truncated: no gzip trailer")?;
    let mut inflated = Vec::with_capacity(data.len());
    let mut decoder = flate2::read::DeflateDecoder::new(&gz[start..end]);
    decoder
        .read_to_end(&mut inflated)
        .map_err(|e| format!("does not decompress: {e}"))?;
    if decoder.total_in() != (end - start) as u64 {
        return Err("has bytes after its deflate stream (several gzip members?)".into());
    }
    if inflated != data {
        return Err(
            "does not decompress to the file beside it: it is stale; build the web \
                    app again"
                .into(),
        );
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let trailer = &gz[end..];
    let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let stored_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if stored_crc != crc.sum() || stored_len != data.len() as u32 {
        return Err("its trailer (CRC-32, length) does not match its content".into());
    }
    Ok((start, end))
}

/// The length of a gzip member's header (RFC 1952 §2.3).
fn gzip_header_len(gz: &[u8]) -> Result<usize, String> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let truncated = || "truncated gzip header".to_string();
    if gz.len() < 10 || gz[0] != 0x1f || gz[1] != 0x8b {
        return Err("not a gzip file".into());
    }
    if gz[2] != 8 {
        return Err("gzip with a compression method other than deflate".into());
    }
    let flags = gz[3];
    if flags & 0xe0 != 0 {
        return Err("gzip header with reserved flags set".into());
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = gz.get(at..at + 2).ok_or_else(truncated)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = gz.get(at..).ok_or_else(truncated)?;
            at += 1 + rest.iter().position(|&b| b == 0).ok_or_else(truncated)?;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > gz.len() {
        return Err(truncated());
    }
    Ok(at)
}

/// A strong ETag: 128 bits of BLAKE2s over the representation's bytes.
pub fn etag(bytes: &[u8]) -> String {
    let digest = Blake2s256::digest(bytes);
    let mut tag = String::from("\"");
    for b in &digest[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

/// The Rust source of the table: `ASSETS`, sorted by path, each gzip body `include_bytes!`d.
pub fn table_source(files: &[WebFile]) -> String {
    let gzip_total: usize = files.iter().map(|f| f.gzip_len).sum();
    let identity_total: usize = files.iter().map(|f| f.len).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by relay/build.rs from web/dist: {} files, {gzip_total} bytes gzipped, \
         {identity_total} bytes uncompressed.\n\n\
         /// Every file of the web app, sorted by path.\n\
         pub(crate) static ASSETS: [Asset; {}] = [",
        files.len(),
        files.len()
    );
    for file in files {
        let cache = if file.immutable {
            "Cache::Immutable"
        } else {
            "Cache::Revalidate"
        };
        let _ = writeln!(
            out,
            "    Asset {{\n        path: {:?},\n        content_type: {:?},\n        \
             cache: {cache},\n        gzip: include_bytes!({:?}),\n        \
             deflate_start: {},\n        deflate_end: {},\n        len: {},\n        \
             etag_identity: {:?},\n        etag_gzip: {:?},\n        \
             identity: OnceLock::new(),\n    }},",
            file.path,
            file.content_type,
            file.gzip_file.display().to_string(),
            file.deflate.0,
            file.deflate.1,
            file.len,
            file.etag_identity,
            file.etag_gzip,
        );
    }
    let _ = writeln!(
        out,
        "];\n\n/// The sum of the files' uncompressed lengths: the most the identity cache \
         holds.\n#[allow(dead_code)]\npub(crate) const IDENTITY_TOTAL: usize = {identity_total};"
    );
    out
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
