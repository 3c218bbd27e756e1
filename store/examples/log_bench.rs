//! Benchmark of the append-only log.
//!
//! ```sh
//! cargo run -p muxagent-store --release --example log_bench -- [--dir PATH] [--secs S] [--gib G]
//! ```
//!
//! 1. Append throughput of ~200-byte records (202 bytes on disk) with a sync every 1, 16, 256
//!    and 4096 records, each for about `--secs` seconds (default 2).
//! 2. Recovery: writes a `--gib` GiB log (default 1; 0 skips it), then times `Log::open`, which
//!    reads and checks every record: with the files in the page cache (warm), after asking the
//!    kernel to drop them from the cache (cold, via `dd iflag=nocache`, best effort), and with a
//!    torn tail to truncate. Then times reading every record back.
//!
//! Everything is written under `--dir` (default: a new directory in the system temp dir) and
//! deleted at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use muxagent_store::{Log, Options};

/// Payload bytes; postcard adds 2 (length), the record 16 (len, crc, seq): 202 bytes on disk.
const PAYLOAD_LEN: usize = 184;

fn main() {
    let mut dir = None;
    let mut secs = 2.0;
    let mut gib = 1.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value())),
            "--secs" => secs = value().parse().unwrap_or_else(|_| usage("bad --secs")),
            "--gib" => gib = value().parse().unwrap_or_else(|_| usage("bad --gib")),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let root = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("muxagent-log-bench-{}", std::process::id()))
    });
    if root.exists() {
        usage(&format!("{} exists; give a new directory", root.display()));
    }
    let result = run(&root, Duration::from_secs_f64(secs), gib);
    let _ = std::fs::remove_dir_all(&root);
    if let Err(error) = result {
        eprintln!("log_bench: {error}");
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("log_bench: {problem}\nusage: log_bench [--dir PATH] [--secs S] [--gib G]");
    std::process::exit(2);
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn payload(n: u64) -> Vec<u8> {
    let mut bytes = vec![b'.'; PAYLOAD_LEN];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn run(root: &Path, secs: Duration, gib: f64) -> Result<()> {
    std::fs::create_dir_all(root)?;
    println!("log_bench in {}", root.display());
    println!("records: {PAYLOAD_LEN}-byte payload, 202 bytes on disk");
    println!();
    println!("append throughput (sync = fdatasync; runs ~{secs:?} each)");
    println!(
        "{:>12} {:>14} {:>10} {:>12}",
        "sync every", "records/s", "MiB/s", "syncs/s"
    );
    for batch in [1u64, 16, 256, 4096] {
        let dir = root.join(format!("append-{batch}"));
        let (mut log, _) = Log::<Vec<u8>>::open(&dir, no_retention())?;
        let value = payload(0);
        let start = Instant::now();
        let mut n = 0u64;
        let mut syncs = 0u64;
        loop {
            for _ in 0..batch {
                log.append(&value)?;
            }
            log.sync()?;
            n += batch;
            syncs += 1;
            if start.elapsed() >= secs {
                break;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let bytes = log.disk_len() as f64;
        drop(log);
        std::fs::remove_dir_all(&dir)?;
        println!(
            "{batch:>12} {:>14.0} {:>10.1} {:>12.0}",
            n as f64 / elapsed,
            bytes / elapsed / (1024.0 * 1024.0),
            syncs as f64 / elapsed
        );
    }

    if gib <= 0.0 {
        return Ok(());
    }
    let target = (gib * (1u64 << 30) as f64) as u64;
    let dir = root.join("recovery");
    println!();
    println!("recovery of a {gib} GiB log (4 MiB segments)");
    let (mut log, _) = Log::<Vec<u8>>::open(&dir, no_retention())?;
    let start = Instant::now();
    let mut n = 0u64;
    while log.disk_len() < target {
        log.append(&payload(n))?;
        n += 1;
        if n.is_multiple_of(4096) {
            log.sync()?;
        }
    }
    log.sync()?;
    let write = start.elapsed();
    let len = log.disk_len();
    let segments = log.segment_paths().count();
    drop(log);
    println!(
        "  wrote {n} records, {len} bytes in {segments} segments in {:.2} s ({:.0} MiB/s, sync every 4096)",
        write.as_secs_f64(),
        len as f64 / write.as_secs_f64() / (1024.0 * 1024.0)
    );

    let (secs_warm, records) = time_open(&dir)?;
    assert_eq!(records, n);
    println!(
        "  open, files in page cache:        {secs_warm:.3} s ({:.0} MiB/s)",
        mib_per_s(len, secs_warm)
    );
    if drop_from_cache(&dir) {
        let (secs_cold, _) = time_open(&dir)?;
        println!(
            "  open, files dropped from cache:   {secs_cold:.3} s ({:.0} MiB/s)",
            mib_per_s(len, secs_cold)
        );
    } else {
        println!("  open, files dropped from cache:   skipped (`dd iflag=nocache` unavailable)");
    }

    // A torn tail: half a record at the end of the last segment.
    let last = last_segment(&dir)?;
    let mut bytes = std::fs::read(&last)?;
    bytes.extend_from_slice(&[0x55; 101]);
    std::fs::write(&last, &bytes)?;
    let start = Instant::now();
    let (log, report) = Log::<Vec<u8>>::open(&dir, no_retention())?;
    let secs_torn = start.elapsed().as_secs_f64();
    assert!(report.truncated.is_some());
    assert_eq!(log.next_seq(), n);
    drop(log);
    println!("  open with a torn tail to truncate: {secs_torn:.3} s");

    let (mut log, _) = Log::<Vec<u8>>::open(&dir, no_retention())?;
    let start = Instant::now();
    let mut count = 0u64;
    for record in log.iter()? {
        let (seq, value) = record?;
        assert_eq!(value[..8], seq.to_le_bytes());
        count += 1;
    }
    let secs_read = start.elapsed().as_secs_f64();
    assert_eq!(count, n);
    println!(
        "  read and decode every record:      {secs_read:.3} s ({:.0} records/s)",
        n as f64 / secs_read
    );
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn no_retention() -> Options {
    Options {
        retention: None,
        ..Options::default()
    }
}

fn mib_per_s(len: u64, secs: f64) -> f64 {
    len as f64 / secs / (1024.0 * 1024.0)
}

fn time_open(dir: &Path) -> Result<(f64, u64)> {
    let start = Instant::now();
    let (log, report) = Log::<Vec<u8>>::open(dir, no_retention())?;
    let secs = start.elapsed().as_secs_f64();
    assert!(report.is_clean(), "{report}");
    Ok((secs, log.next_seq()))
}

fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "seg") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn last_segment(dir: &Path) -> Result<PathBuf> {
    segments(dir)?
        .pop()
        .ok_or_else(|| "the log has no segment".into())
}

/// Asks the kernel to drop the (synced, clean) segment files from the page cache: GNU dd's
/// `iflag=nocache count=0` does `posix_fadvise(DONTNEED)` on the whole file, no root needed.
fn drop_from_cache(dir: &Path) -> bool {
    let Ok(files) = segments(dir) else {
        return false;
    };
    files.iter().all(|file| {
        Command::new("dd")
            .arg(format!("if={}", file.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}
