//! The web app's files, embedded at build time (`build.rs` walks `web/dist`; see
//! `build/web.rs` for the rules it checks).
//!
//! Each file is embedded once, as its gzip bytes: the binary grows by the compressed size only.
//! A browser takes those bytes as they are (`Content-Encoding: gzip`). For a client that does
//! not accept gzip, [`Asset::identity`] inflates the file once and keeps it: that work and
//! memory are bounded by the table itself (each file is at most 16 MiB uncompressed, checked at
//! build time, and the whole web app is a few hundred KiB), never by what clients send.
//!
//! The table is fixed at build time and searched by the exact request path, so no request can
//! name anything outside it.

use std::fmt;
use std::sync::OnceLock;

/// How long a client may keep a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cache {
    /// Content-addressed (`assets/NAME-HASH.EXT`): a new build has new names, so keep it.
    Immutable,
    /// A stable name (`index.html`, `sw.js`, …): revalidate on every use (a 304 is cheap).
    Revalidate,
}

impl Cache {
    /// The `Cache-Control` value.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Cache::Immutable => "public, max-age=31536000, immutable",
            Cache::Revalidate => "no-cache",
        }
    }
}

/// One embedded file.
pub(crate) struct Asset {
    /// The request path without its leading `/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub cache: Cache,
    /// The whole gzip file, served as it is.
    pub gzip: &'static [u8],
    /// The raw deflate stream inside `gzip` (found and checked at build time).
    deflate_start: usize,
    deflate_end: usize,
    /// The length of the file itself.
    pub len: usize,
    /// Strong ETags, one per representation (RFC 9110 §8.8.3: a strong validator changes with
    /// the bytes, and the gzip bytes are not the identity bytes).
    pub etag_identity: &'static str,
    pub etag_gzip: &'static str,
    /// The inflated file, once a client has asked for it without gzip (`None`: it did not
    /// inflate, which the build's check makes impossible).
    identity: OnceLock<Option<Box<[u8]>>>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

impl Asset {
    /// The file itself, inflated on first use and kept (see the module docs for the bound).
    /// Threads asking at the same time wait for the first one; inflating the largest file
    /// takes a few milliseconds, once per process.
    pub(crate) fn identity(&'static self) -> Option<&'static [u8]> {
        self.identity
            .get_or_init(|| {
                let deflate = self.gzip.get(self.deflate_start..self.deflate_end)?;
                let data =
                    miniz_oxide::inflate::decompress_to_vec_with_limit(deflate, self.len).ok()?;
                (data.len() == self.len).then(|| data.into_boxed_slice())
            })
            .as_deref()
    }
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asset").field("path", &self.path).finish()
    }
}

impl PartialEq for Asset {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for Asset {}

/// The file served at `path` (the request path without its leading `/`), if any.
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|asset| asset.path.cmp(path))
        .ok()
        .map(|i| &ASSETS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_complete() {
        assert!(ASSETS.windows(2).all(|w| w[0].path < w[1].path));
        for required in ["index.html", "sw.js", "manifest.webmanifest"] {
            assert!(find(required).is_some(), "{required} is embedded");
        }
        assert_eq!(IDENTITY_TOTAL, ASSETS.iter().map(|a| a.len).sum::<usize>());
    }

    #[test]
    fn every_file_inflates_to_its_length() {
        for asset in &ASSETS {
            let data = asset.identity().unwrap_or_default();
            assert_eq!(data.len(), asset.len, "{}", asset.path);
            assert_ne!(asset.etag_identity, asset.etag_gzip);
            let immutable = asset.path.starts_with("assets/");
            assert_eq!(asset.cache == Cache::Immutable, immutable, "{}", asset.path);
        }
    }

    #[test]
    fn lookups_are_exact() {
        for path in [
            "",
            "/index.html",
            "index.html/",
            "INDEX.HTML",
            "./index.html",
            "assets",
            "assets/",
        ] {
            assert!(find(path).is_none(), "{path:?}");
        }
    }
}
