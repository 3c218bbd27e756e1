//! The log: appending, syncing, rotating, compacting and reading typed records.
//!
//! See the crate documentation for the on-disk layout, the fsync policy and what a crash at
//! any point leaves behind.

use core::fmt;
use core::marker::PhantomData;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::limits::{LOG_RETENTION_LEN, LOG_SEGMENT_LEN, LOG_WRITE_BUFFER_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dir;
use crate::error::{Corruption, Error, FollowedBy, IoContext};
use crate::record::{self, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEQ_LEN, decode_record};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, Segment};

/// How a log rotates and compacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// A new segment file is started before an append that would take the current one past
    /// this many bytes (a segment always takes at least one record, however large).
    pub segment_len: u64,
    /// When `Some(budget)`, each time a new segment is started the oldest segments are deleted
    /// while the log is larger than `budget` bytes (never the segment being written), so disk
    /// use stays under `budget + segment_len + one record`. `None` keeps everything: use it for
    /// a log that must not lose entries (the relay's registry) and compact it with
    /// [`Log::rewrite`] instead.
    pub retention: Option<u64>,
}

impl Default for Options {
    /// [`LOG_SEGMENT_LEN`] segments and a [`LOG_RETENTION_LEN`] budget: the daemon's sessions.
    fn default() -> Self {
        Options {
            segment_len: LOG_SEGMENT_LEN,
            retention: Some(LOG_RETENTION_LEN),
        }
    }
}

/// An append-only log of `T` values in one directory, each record numbered with a sequence
/// number one higher than the previous one.
///
/// One `Log` per directory at a time: the log takes no lock, the caller holds one (the daemon's
/// lock file, the relay's single process).
pub struct Log<T> {
    dir: PathBuf,
    options: Options,
    /// In seq order, never empty; the last one is being written.
    segments: Vec<Segment>,
    /// The last segment, positioned at `written`.
    active: File,
    /// Bytes of the last segment already handed to the OS; the rest of its `len` is in `buf`.
    written: u64,
    /// Encoded records not yet written to the file.
    buf: Vec<u8>,
    /// Every record with a seq below this is durable.
    durable: u64,
    /// fdatasyncs of segments by [`Log::sync`] (and the rotations that call it) so far.
    syncs: u64,
    /// A write, sync or rotation failed: the on-disk state is unknown until reopened.
    poisoned: bool,
    _values: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("first_seq", &self.first_seq())
            .field("next_seq", &self.next_seq())
            .field("durable_seq", &self.durable)
            .field("segments", &self.segments.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// `Extend<u8>` into a borrowed Vec, so postcard can encode straight into the write buffer.
struct Sink<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Sink<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Appends the record `(seq, value)` to `out`; returns its length. `out` is unchanged on error.
fn encode_into<T: Serialize>(out: &mut Vec<u8>, seq: u64, value: &T) -> Result<usize, Error> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.extend_from_slice(&seq.to_le_bytes());
    if let Err(error) = postcard::to_extend(value, Sink(out)) {
        out.truncate(start);
        return Err(Error::Encode(error));
    }
    let len = out.len() - start - RECORD_HEADER_LEN - SEQ_LEN;
    if len > MAX_PAYLOAD_LEN || record::seal_record(out, start).is_err() {
        out.truncate(start);
        return Err(Error::RecordTooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(out.len() - start)
}

fn open_for_append(path: &Path, len: u64) -> Result<File, Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .ctx("open log segment", path)?;
    file.seek(SeekFrom::Start(len))
        .ctx("seek in log segment", path)?;
    Ok(file)
}

impl<T> Log<T> {
    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// The first seq the log holds (equal to `next_seq()` when it holds none).
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base)
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.segments.last().map_or(0, Segment::end_seq)
    }

    /// Every seq below this is durable (acknowledged by a sync, a rotation, a rewrite or found
    /// on disk at open).
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// How many times this `Log` fdatasynced a segment to make appends durable ([`Log::sync`],
    /// rotations): what group commit saves is visible here (tests, benchmarks).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Bytes the log takes on disk, counting buffered records.
    pub fn disk_len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> impl Iterator<Item = &Path> {
        self.segments.iter().map(|s| s.path.as_path())
    }

    fn active_segment(&self) -> &Segment {
        // `segments` is never empty (open and rewrite guarantee one).
        &self.segments[self.segments.len() - 1]
    }

    fn check_poisoned(&self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned> Log<T> {
    /// Opens the log in `dir`, creating the directory and an empty log if there is none.
    ///
    /// Opening checks every record (length, checksum, seq) and repairs only what a crash can
    /// leave: a torn or corrupt tail of the last segment is cut off, temporary files are deleted,
    /// and a rewrite that committed is finished. The report says what was done. Damage anywhere
    /// else is an [`Error::Corrupt`] and nothing is changed on disk.
    ///
    /// Everything found on disk counts as durable: opening fdatasyncs the last segment and the
    /// directory (a writer that was killed may have left its last records in the page cache).
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Self, RecoveryReport), Error> {
        let dir = dir.as_ref().to_path_buf();
        let (segments, report) = recovery::recover(&dir)?;
        let Some(last) = segments.last() else {
            // recover() always returns at least one segment.
            return Err(Error::Io {
                action: "find a segment in",
                path: dir,
                source: std::io::Error::other("the log has no segment"),
            });
        };
        let (len, end) = (last.len, last.end_seq());
        let active = open_for_append(&last.path, len)?;
        // What a killed writer left may still be only in the page cache: make it durable before
        // calling it so.
        active.sync_data().ctx("sync log segment", &last.path)?;
        dir::sync_dir(&dir)?;
        let log = Log {
            dir,
            options,
            segments,
            active,
            written: len,
            buf: Vec::with_capacity(LOG_WRITE_BUFFER_LEN),
            durable: end,
            syncs: 0,
            poisoned: false,
            _values: PhantomData,
        };
        Ok((log, report))
    }

    /// Appends `value` and returns its seq. The record is buffered: it is durable only once a
    /// later [`Log::sync`] (or [`Log::close`]) returns `Ok`.
    ///
    /// A value whose encoding is over [`MAX_PAYLOAD_LEN`] bytes is refused with
    /// [`Error::RecordTooLarge`] and nothing is appended. An IO error here (writing out the
    /// buffer, or starting a new segment) poisons the log.
    pub fn append(&mut self, value: &T) -> Result<u64, Error> {
        self.check_poisoned()?;
        let seq = self.next_seq();
        let start = self.buf.len();
        let len = encode_into(&mut self.buf, seq, value)? as u64;
        let active = self.active_segment();
        if active.records > 0 && active.len + len > self.options.segment_len {
            let record = self.buf.split_off(start);
            self.rotate()?;
            self.buf.extend_from_slice(&record);
        }
        let last = self.segments.len() - 1;
        self.segments[last].push(len);
        if self.buf.len() >= LOG_WRITE_BUFFER_LEN {
            self.flush()?;
        }
        Ok(seq)
    }

    /// Makes every record appended so far durable: writes the buffer and fdatasyncs the segment
    /// file once (group commit). Returns the seq the next append will get; every seq below it
    /// is acknowledged as durable. A failure poisons the log (after a failed fsync the kernel
    /// may have dropped the data, and a retry could falsely succeed): reopen it.
    pub fn sync(&mut self) -> Result<u64, Error> {
        self.check_poisoned()?;
        let next = self.next_seq();
        if self.durable == next {
            return Ok(next);
        }
        self.flush()?;
        self.syncs += 1;
        if let Err(source) = self.active.sync_data() {
            self.poisoned = true;
            return Err(Error::Io {
                action: "sync log segment",
                path: self.active_segment().path.clone(),
                source,
            });
        }
        self.durable = next;
        Ok(next)
    }

    /// Syncs and closes the log. Returns what [`Log::sync`] returns.
    pub fn close(mut self) -> Result<u64, Error> {
        self.sync()
    }

    /// Deletes the oldest whole segments while the log is larger than `max_bytes` (the segment
    /// being written is never deleted) and syncs the directory. Returns the first seq the log
    /// still holds. Crash-safe: segments are deleted oldest first, so any crash leaves a
    /// contiguous suffix of the log.
    pub fn retain(&mut self, max_bytes: u64) -> Result<u64, Error> {
        self.check_poisoned()?;
        let mut total = self.disk_len();
        let mut removed = 0;
        let mut result = Ok(());
        while self.segments.len() - removed > 1 && total > max_bytes {
            let segment = &self.segments[removed];
            result = fs::remove_file(&segment.path).ctx("remove old log segment", &segment.path);
            if result.is_err() {
                break;
            }
            total -= segment.len;
            removed += 1;
        }
        self.segments.drain(..removed);
        if removed > 0 {
            dir::sync_dir(&self.dir)?;
        }
        result.map(|()| self.first_seq())
    }

    /// Replaces the whole log with `values`, atomically: they are written to a temporary
    /// segment, which is synced, renamed into place as a SNAPSHOT segment (the commit point),
    /// and the directory synced; then the old segments are deleted. A crash at any point leaves
    /// either the old log or the new one, never a mix: before the rename, opening deletes the
    /// temporary file; after it, opening deletes the segments the snapshot supersedes.
    ///
    /// Seqs continue: the values get `next_seq()..`, and the returned seq is the first of them
    /// (the new `first_seq()`). Records appended but not yet synced are discarded with the old
    /// log. Everything in the new log is durable when this returns `Ok`. The snapshot is one
    /// segment, however large; later appends rotate as usual.
    ///
    /// An error before the commit point leaves the old log as it was and usable; an error after
    /// it poisons the log (reopening finishes the rewrite).
    pub fn rewrite<'a, I>(&mut self, values: I) -> Result<u64, Error>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        self.check_poisoned()?;
        let base = self.next_seq();
        let path = self.dir.join(segment::file_name(base));
        let temp = self.dir.join(segment::temp_name(base));
        let mut snapshot = Segment::empty(path.clone(), base);
        let written = write_snapshot(&temp, &mut snapshot, values);
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        if let Err(error) = dir::commit_rename(&self.dir, &temp, &path) {
            self.poisoned = true;
            return Err(error);
        }
        // Committed: from here on the directory holds the new log, whatever happens.
        self.poisoned = true;
        let active = open_for_append(&path, snapshot.len)?;
        for old in &self.segments {
            if old.path != path {
                fs::remove_file(&old.path).ctx("remove superseded log segment", &old.path)?;
            }
        }
        dir::sync_dir(&self.dir)?;
        self.active = active;
        self.written = snapshot.len;
        self.buf.clear();
        self.durable = snapshot.end_seq();
        self.segments = vec![snapshot];
        self.poisoned = false;
        Ok(base)
    }

    /// Reads every record, oldest first.
    pub fn iter(&mut self) -> Result<Iter<'_, T>, Error> {
        self.iter_from(self.first_seq())
    }

    /// Reads the records from seq `from` on, in order, for resuming or paging ("from seq N").
    /// `from == next_seq()` gives an empty iterator; anything outside
    /// `first_seq()..=next_seq()` is [`Error::SeqNotAvailable`].
    ///
    /// Readers see every appended record, durable or not (the buffer is written to the OS
    /// first). Starting costs at most one index interval of reading.
    pub fn iter_from(&mut self, from: u64) -> Result<Iter<'_, T>, Error> {
        self.check_poisoned()?;
        let (first, next) = (self.first_seq(), self.next_seq());
        if from < first || from > next {
            return Err(Error::SeqNotAvailable {
                requested: from,
                first,
                next,
            });
        }
        self.flush()?;
        let segment = self
            .segments
            .partition_point(|s| s.base <= from)
            .saturating_sub(1);
        Ok(Iter {
            log: self,
            segment,
            reader: None,
            next: from,
            end: next,
            buf: Vec::new(),
        })
    }

    /// Writes the buffer to the active segment (no sync).
    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.active.write_all(&self.buf) {
            self.poisoned = true;
            return Err(Error::Io {
                action: "write to log segment",
                path: self.active_segment().path.clone(),
                source,
            });
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Syncs the active segment and starts a new one at `next_seq()`, then applies retention.
    /// A finished segment is always complete and durable before the next one exists, so only
    /// the last segment can have a torn tail.
    fn rotate(&mut self) -> Result<(), Error> {
        self.sync()?;
        self.poisoned = true;
        let base = self.next_seq();
        let path = segment::create(&self.dir, base, false, &[])?;
        self.active = open_for_append(&path, segment::HEADER_LEN as u64)?;
        self.written = segment::HEADER_LEN as u64;
        self.segments.push(Segment::empty(path, base));
        self.poisoned = false;
        if let Some(budget) = self.options.retention {
            self.retain(budget)?;
        }
        Ok(())
    }
}

impl<T> Drop for Log<T> {
    /// Hands buffered records to the OS (without syncing them), as `BufWriter` does, so a
    /// process that exits normally keeps them.
    fn drop(&mut self) {
        if !self.poisoned && !self.buf.is_empty() {
            let _ = self.active.write_all(&self.buf);
        }
    }
}

/// Writes the header and `values` to a new file at `temp` and syncs it; notes the records in
/// `snapshot`.
fn write_snapshot<'a, T, I>(temp: &Path, snapshot: &mut Segment, values: I) -> Result<(), Error>
where
    T: Serialize + 'a,
    I: IntoIterator<Item = &'a T>,
{
    let mut file = dir::create_file(temp)?;
    let mut out = Vec::with_capacity(LOG_WRITE_BUFFER_LEN);
    out.extend_from_slice(&segment::encode_header(snapshot.base, true));
    for value in values {
        let len = encode_into(&mut out, snapshot.end_seq(), value)?;
        snapshot.push(len as u64);
        if out.len() >= LOG_WRITE_BUFFER_LEN {
            file.write_all(&out).ctx("write", temp)?;
            out.clear();
        }
    }
    file.write_all(&out).ctx("write", temp)?;
    file.sync_all().ctx("sync", temp)
}

/// Reads records in seq order; from [`Log::iter`] and [`Log::iter_from`]. Yields
/// `(seq, value)`. Stops after the first error.
pub struct Iter<'a, T> {
    log: &'a Log<T>,
    /// Index of the segment being read.
    segment: usize,
    reader: Option<SegmentReader>,
    /// Seq of the next record to yield.
    next: u64,
    /// Seq after the last record to yield.
    end: u64,
    buf: Vec<u8>,
}

struct SegmentReader {
    file: BufReader<File>,
    /// Offset of the next record.
    offset: u64,
    /// Seq of the record at `offset`.
    seq: u64,
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

/// Read buffer of an iterator: small, because resync reads pages of records.
const READ_BUFFER_LEN: usize = 64 * 1024;

impl<T: DeserializeOwned> Iter<'_, T> {
    fn read_next(&mut self) -> Result<Option<(u64, T)>, Error> {
        loop {
            if self.next >= self.end {
                return Ok(None);
            }
            let log = self.log;
            let Some(segment) = log.segments.get(self.segment) else {
                return Ok(None);
            };
            let reader = match &mut self.reader {
                Some(reader) => reader,
                None => {
                    let (seq, offset) = segment.seek_point(self.next);
                    let mut file =
                        File::open(&segment.path).ctx("open log segment", &segment.path)?;
                    file.seek(SeekFrom::Start(offset))
                        .ctx("seek in log segment", &segment.path)?;
                    self.reader.insert(SegmentReader {
                        file: BufReader::with_capacity(READ_BUFFER_LEN, file),
                        offset,
                        seq,
                    })
                }
            };
            if reader.offset >= segment.len {
                self.segment += 1;
                self.reader = None;
                continue;
            }
            let offset = reader.offset;
            let corrupt = |problem| Error::Corrupt {
                segment: segment.path.clone(),
                offset,
                problem,
                followed_by: FollowedBy::ChangedSinceOpen,
            };
            self.buf.resize(RECORD_HEADER_LEN, 0);
            reader
                .file
                .read_exact(&mut self.buf)
                .ctx("read log segment", &segment.path)?;
            let len =
                record::decode_record_len(&self.buf).map_err(|e| corrupt(Corruption::Record(e)))?;
            self.buf.resize(len, 0);
            reader
                .file
                .read_exact(&mut self.buf[RECORD_HEADER_LEN..])
                .ctx("read log segment", &segment.path)?;
            let (record, _) =
                decode_record(&self.buf).map_err(|e| corrupt(Corruption::Record(e)))?;
            if record.seq != reader.seq {
                return Err(corrupt(Corruption::UnexpectedSeq {
                    expected: reader.seq,
                    found: record.seq,
                }));
            }
            reader.offset += len as u64;
            reader.seq += 1;
            if record.seq < self.next {
                continue;
            }
            let value = postcard::from_bytes(record.payload).map_err(|source| Error::Decode {
                segment: segment.path.clone(),
                offset,
                seq: record.seq,
                source,
            })?;
            self.next += 1;
            return Ok(Some((record.seq, value)));
        }
    }
}

impl<T: DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<(u64, T), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_next() {
            Ok(item) => item.map(Ok),
            Err(error) => {
                self.next = self.end;
                Some(Err(error))
            }
        }
    }
}
