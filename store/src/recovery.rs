//! What [`crate::Log::open`] repaired, for the caller to log.
//!
//! Opening repairs only what a crash can leave behind: a torn tail on the last segment, a
//! temporary file of an unfinished rotation or rewrite, and the old segments of a rewrite that
//! committed (renamed its snapshot into place) but had not deleted them yet. Anything else is an
//! [`crate::Error::Corrupt`] and is left on disk untouched.

use core::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::dir;
use crate::error::{Corruption, Error, FollowedBy, IoContext};
use crate::segment::{self, Name, Segment};

/// What opening a log found and repaired. [`RecoveryReport::is_clean`] is true after a clean
/// shutdown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn or corrupt tail cut off the last segment, if there was one.
    pub truncated: Option<TailTruncation>,
    /// Temporary files of an unfinished rotation or rewrite, deleted (the rewrite did not happen).
    pub removed_temp_files: Vec<PathBuf>,
    /// Segments deleted because a rewrite had committed a snapshot that replaces them.
    pub superseded_segments: Vec<PathBuf>,
    /// The segment created because the directory held none (a new log).
    pub created: Option<PathBuf>,
}

/// A torn or corrupt tail cut off the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailTruncation {
    /// The segment file.
    pub segment: PathBuf,
    /// The file now ends at this byte offset: the end of its last valid record.
    pub offset: u64,
    /// Bytes cut off (the file was `offset + dropped_bytes` long).
    pub dropped_bytes: u64,
    /// What was wrong at `offset`.
    pub reason: Corruption,
}

impl RecoveryReport {
    /// True when opening changed nothing on disk except possibly creating a new, empty log.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_none()
            && self.removed_temp_files.is_empty()
            && self.superseded_segments.is_empty()
    }
}

impl fmt::Display for TailTruncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "truncated {} at byte offset {}, dropping {} bytes: {}",
            self.segment.display(),
            self.offset,
            self.dropped_bytes,
            self.reason
        )
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return match &self.created {
                Some(path) => write!(f, "created a new log: {}", path.display()),
                None => f.write_str("clean"),
            };
        }
        let mut sep = "";
        if let Some(truncation) = &self.truncated {
            write!(f, "{truncation}")?;
            sep = "; ";
        }
        for path in &self.removed_temp_files {
            write!(
                f,
                "{sep}removed {} left by an unfinished rotation or rewrite",
                path.display()
            )?;
            sep = "; ";
        }
        for path in &self.superseded_segments {
            write!(
                f,
                "{sep}removed {}, replaced by a committed rewrite",
                path.display()
            )?;
            sep = "; ";
        }
        Ok(())
    }
}

/// Opens the log directory `dir` (creating it if missing): finishes or undoes what a crash
/// interrupted, checks every segment, truncates a torn tail of the last one, and returns the
/// segments in seq order (never empty).
pub(crate) fn recover(dir_path: &Path) -> Result<(Vec<Segment>, RecoveryReport), Error> {
    dir::create_dir(dir_path)?;
    let mut report = RecoveryReport::default();
    let mut found = Vec::new();
    for entry in fs::read_dir(dir_path).ctx("list log directory", dir_path)? {
        let entry = entry.ctx("list log directory", dir_path)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match segment::parse_name(name) {
            Name::Segment(base) => found.push((base, entry.path())),
            Name::Temp => {
                let path = entry.path();
                fs::remove_file(&path).ctx("remove temporary file", &path)?;
                report.removed_temp_files.push(path);
            }
            Name::Other => {}
        }
    }
    found.sort_unstable_by_key(|&(base, _)| base);

    // A rewrite commits by renaming a SNAPSHOT segment into place; everything before the newest
    // one is superseded, whatever state it is in.
    let mut start = 0;
    for (i, (_, path)) in found.iter().enumerate().rev() {
        if read_header(path)?.snapshot {
            start = i;
            break;
        }
    }
    for (_, path) in found.drain(..start) {
        fs::remove_file(&path).ctx("remove superseded log segment", &path)?;
        report.superseded_segments.push(path);
    }
    if !report.removed_temp_files.is_empty() || !report.superseded_segments.is_empty() {
        dir::sync_dir(dir_path)?;
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(found.len().max(1));
    let last = found.len().saturating_sub(1);
    for (i, (base, path)) in found.into_iter().enumerate() {
        if let Some(previous) = segments.last()
            && previous.end_seq() != base
        {
            return Err(Error::Corrupt {
                segment: path,
                offset: 0,
                problem: Corruption::SegmentGap {
                    expected: previous.end_seq(),
                    found: base,
                },
                followed_by: FollowedBy::NotATornWrite,
            });
        }
        let scan = segment::scan(&path, base)?;
        if let Some(damage) = scan.damage {
            let followed_by = match damage.valid_after {
                Some(offset) => FollowedBy::ValidRecord { offset },
                None if i < last => FollowedBy::LaterSegments,
                None => {
                    truncate(&path, damage.offset)?;
                    report.truncated = Some(TailTruncation {
                        segment: path,
                        offset: damage.offset,
                        dropped_bytes: damage.file_len - damage.offset,
                        reason: damage.problem,
                    });
                    segments.push(scan.segment);
                    continue;
                }
            };
            return Err(Error::Corrupt {
                segment: path,
                offset: damage.offset,
                problem: damage.problem,
                followed_by,
            });
        }
        segments.push(scan.segment);
    }

    if segments.is_empty() {
        let path = segment::create(dir_path, 0, false, &[])?;
        report.created = Some(path.clone());
        segments.push(Segment::empty(path, 0));
    }
    Ok((segments, report))
}

fn read_header(path: &Path) -> Result<segment::Header, Error> {
    let mut bytes = Vec::with_capacity(segment::HEADER_LEN);
    File::open(path)
        .and_then(|file| {
            file.take(segment::HEADER_LEN as u64)
                .read_to_end(&mut bytes)
        })
        .ctx("read log segment", path)?;
    segment::decode_header(&bytes).map_err(|problem| Error::Corrupt {
        segment: path.to_path_buf(),
        offset: 0,
        problem,
        followed_by: FollowedBy::NotATornWrite,
    })
}

fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .ctx("open log segment", path)?;
    file.set_len(len).ctx("truncate log segment", path)?;
    file.sync_all().ctx("sync log segment", path)
}
