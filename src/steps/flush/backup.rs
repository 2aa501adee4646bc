//! The flush backup file: what `flush` writes before it deletes a key and what `restore` reads.
//!
//! A file is one or more segments, one per flush run that wrote to it (a re-run after a failure
//! appends, so one file holds everything the step ever deleted). All integers little-endian.
//!
//! ```text
//! segment = header record* trailer
//! header  = "RBFLUSH\0" (8 bytes)  version: u16 = 1  reserved: u16 = 0  started_at_ms: u64
//! record  = 0x01  key_len: u32  key  pttl_ms: i64 (-1 = no expiry)  dumped_at_ms: u64
//!           value_len: u64  value (the DUMP payload, which carries its own CRC64)
//! trailer = tag  record_count: u64  sha256: [u8; 32]
//!           tag 0xFF: the flush deleted every matching key it found; 0xFE: it stopped before
//!           that (an error, a signal), so matching keys it never reached may still be there
//! ```
//! The SHA-256 covers the segment from the magic through `record_count`. A segment without a
//! trailer is truncated (the flush died mid-way): its whole records are intact and restorable.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"RBFLUSH\0";
pub const VERSION: u16 = 1;
const TAG_RECORD: u8 = 0x01;
const TAG_END: u8 = 0xFF;
const TAG_STOPPED: u8 = 0xFE;
const HEADER_LEN: u64 = 8 + 2 + 2 + 8;

/// One backed-up key.
pub struct Record {
    pub key: Vec<u8>,
    /// Milliseconds to live when dumped, or -1 for no expiry.
    pub pttl_ms: i64,
    pub dumped_at_ms: u64,
    pub value: Vec<u8>,
}

impl Record {
    /// Milliseconds left to live at `now_ms`: `None` for no expiry, `Some(0)` when expired.
    pub fn remaining_ttl_ms(&self, now_ms: u64) -> Option<u64> {
        if self.pttl_ms < 0 {
            return None;
        }
        let expires_at = self.dumped_at_ms.saturating_add(self.pttl_ms as u64);
        Some(expires_at.saturating_sub(now_ms))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes one segment. Records go through a buffered writer; `sync_to_os` pushes them to the
/// kernel (done before every UNLINK, so a crash of this process never loses a deleted key's
/// backup) and `finish` writes the trailer and fsyncs.
pub struct BackupWriter {
    out: BufWriter<File>,
    hasher: Sha256,
    records: u64,
    path: PathBuf,
}

impl BackupWriter {
    /// Open `path` for a new segment: create it, or append to it when it holds complete segments.
    pub fn open(path: &Path) -> Result<BackupWriter, OpenError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private::create_dir_all(parent).map_err(private_error)?;
        }
        let mut file = crate::private::open(
            path,
            crate::private::options().create(true).read(true).append(true),
        )
        .map_err(private_error)?;
        let len = file.metadata().map_err(OpenError::Io)?.len();
        if len > 0 {
            let scan = scan_file(&mut file, len).map_err(OpenError::Io)?;
            if let Some(problem) = scan.problem {
                return Err(OpenError::NotAppendable(problem.to_string()));
            }
            file.seek(SeekFrom::End(0)).map_err(OpenError::Io)?;
        }
        let mut writer = BackupWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            records: 0,
            path: path.to_path_buf(),
        };
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&now_ms().to_le_bytes());
        writer.put(&header).map_err(OpenError::Io)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    pub fn write(
        &mut self,
        key: &[u8],
        pttl_ms: i64,
        dumped_at_ms: u64,
        value: &[u8],
    ) -> io::Result<()> {
        let mut head = Vec::with_capacity(1 + 4 + key.len() + 8 + 8 + 8);
        head.push(TAG_RECORD);
        head.extend_from_slice(&(key.len() as u32).to_le_bytes());
        head.extend_from_slice(key);
        head.extend_from_slice(&pttl_ms.to_le_bytes());
        head.extend_from_slice(&dumped_at_ms.to_le_bytes());
        head.extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.put(&head)?;
        self.put(value)?;
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sync_to_os(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Write the trailer, fsync, and return the segment's SHA-256 (hex) and the file's size.
    /// `complete`: the flush deleted every matching key it found (else it stopped before).
    pub fn finish(mut self, complete: bool) -> io::Result<(String, u64)> {
        let mut tail = vec![if complete { TAG_END } else { TAG_STOPPED }];
        tail.extend_from_slice(&self.records.to_le_bytes());
        self.put(&tail)?;
        let digest = self.hasher.finalize_reset();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        let file = self.out.get_ref();
        file.sync_all()?;
        let size = file.metadata()?.len();
        sync_parent_dir(&self.path);
        Ok((hex::encode(digest), size))
    }
}

/// Make the file's directory entry durable too; best effort, as not every filesystem allows it.
fn sync_parent_dir(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// A refusal of the private state directory (a link planted at the backup), kept whole.
fn private_error(e: anyhow::Error) -> OpenError {
    OpenError::Io(io::Error::other(format!("{e:#}")))
}

pub enum OpenError {
    Io(io::Error),
    NotAppendable(String),
}

/// What is wrong with a file, found by `scan_file`.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The file ends inside a segment: everything before `offset` in it is whole records.
    Truncated { offset: u64, intact_records: u64 },
    /// Bytes that cannot be a backup: a bad magic, version, tag or checksum.
    Corrupt { offset: u64, what: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Truncated { offset, intact_records } => write!(
                f,
                "it ends at byte {offset} without its checksum trailer; the last segment has {intact_records} intact records"
            ),
            Problem::Corrupt { offset, what } => write!(f, "{what} at byte {offset}"),
        }
    }
}

/// The result of checking a whole file: how many records are restorable, and what is wrong.
pub struct Scan {
    pub restorable: u64,
    pub problem: Option<Problem>,
    /// SHA-256 of each complete segment, in order.
    pub checksums: Vec<String>,
    /// Whether the last segment's flush deleted every matching key it found: only then are the
    /// matching keys in Redis now all written after the flush.
    pub last_complete: bool,
}

/// Check every segment: structure, and the SHA-256 of the complete ones. Reads the file once
/// without keeping the values.
pub fn scan_file(file: &mut File, len: u64) -> io::Result<Scan> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = Reader::new(BufReader::with_capacity(1 << 20, &mut *file), len);
    let mut scan =
        Scan { restorable: 0, problem: None, checksums: Vec::new(), last_complete: false };
    loop {
        match reader.next_item(false)? {
            Item::Record(_) => scan.restorable += 1,
            Item::SegmentEnd { checksum, complete } => {
                scan.checksums.push(checksum);
                scan.last_complete = complete;
            }
            Item::Eof => break,
            Item::Problem(p) => {
                scan.problem = Some(p);
                break;
            }
        }
    }
    if matches!(scan.problem, Some(Problem::Corrupt { .. })) {
        scan.restorable = 0;
    }
    Ok(scan)
}

pub enum Item {
    Record(Record),
    /// A sealed segment: its checksum, and whether its flush deleted every matching key.
    SegmentEnd {
        checksum: String,
        complete: bool,
    },
    Eof,
    Problem(Problem),
}

/// Reads segments item by item, hashing as it goes.
pub struct Reader<R: Read> {
    inner: R,
    offset: u64,
    len: u64,
    in_segment: bool,
    hasher: Sha256,
    /// Records read so far in the current segment.
    pub segment_records: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R, len: u64) -> Reader<R> {
        Reader {
            inner,
            offset: 0,
            len,
            in_segment: false,
            hasher: Sha256::new(),
            segment_records: 0,
        }
    }

    fn take(&mut self, n: u64, keep: bool) -> io::Result<Option<Vec<u8>>> {
        if n > self.len - self.offset {
            return Ok(None);
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf)?;
        self.hasher.update(&buf);
        self.offset += n;
        Ok(Some(if keep { buf } else { Vec::new() }))
    }

    fn take_u64(&mut self) -> io::Result<Option<u64>> {
        Ok(self.take(8, true)?.map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())))
    }

    fn truncated(&self) -> Item {
        Item::Problem(Problem::Truncated {
            offset: self.offset,
            intact_records: self.segment_records,
        })
    }

    fn corrupt(&self, what: impl Into<String>) -> Item {
        Item::Problem(Problem::Corrupt { offset: self.offset, what: what.into() })
    }

    /// The next record, segment end, end of file or problem. With `keep_values` false the DUMP
    /// payloads are read and hashed but not kept (for `scan_file`).
    pub fn next_item(&mut self, keep_values: bool) -> io::Result<Item> {
        if !self.in_segment {
            if self.offset == self.len {
                return Ok(Item::Eof);
            }
            let Some(header) = self.take(HEADER_LEN, true)? else { return self.short_header() };
            if &header[..8] != MAGIC {
                return Ok(self.corrupt("not a runbook flush backup (bad magic)"));
            }
            let version = u16::from_le_bytes([header[8], header[9]]);
            if version != VERSION {
                return Ok(self.corrupt(format!(
                    "unsupported backup version {version} (expected {VERSION})"
                )));
            }
            self.in_segment = true;
            self.segment_records = 0;
        }
        let Some(tag) = self.take(1, true)? else { return Ok(self.truncated()) };
        match tag[0] {
            TAG_RECORD => self.record(keep_values),
            TAG_END => self.segment_end(true),
            TAG_STOPPED => self.segment_end(false),
            other => Ok(self.corrupt(format!("unknown record tag 0x{other:02x}"))),
        }
    }

    /// Fewer bytes than a header: a truncated backup if they start like one, else not a backup.
    fn short_header(&mut self) -> io::Result<Item> {
        let rest = self.take(self.len - self.offset, true)?.unwrap_or_default();
        let n = rest.len().min(MAGIC.len());
        if rest[..n] != MAGIC[..n] {
            return Ok(self.corrupt("not a runbook flush backup (bad magic)"));
        }
        Ok(self.truncated())
    }

    fn record(&mut self, keep_values: bool) -> io::Result<Item> {
        let Some(key_len) = self.take(4, true)? else { return Ok(self.truncated()) };
        let key_len = u32::from_le_bytes(key_len.try_into().unwrap_or_default()) as u64;
        let Some(key) = self.take(key_len, true)? else { return Ok(self.truncated()) };
        let Some(pttl) = self.take_u64()? else { return Ok(self.truncated()) };
        let Some(dumped_at_ms) = self.take_u64()? else { return Ok(self.truncated()) };
        let Some(value_len) = self.take_u64()? else { return Ok(self.truncated()) };
        let Some(value) = self.take(value_len, keep_values)? else { return Ok(self.truncated()) };
        self.segment_records += 1;
        Ok(Item::Record(Record { key, pttl_ms: pttl as i64, dumped_at_ms, value }))
    }

    fn segment_end(&mut self, complete: bool) -> io::Result<Item> {
        let Some(count) = self.take_u64()? else { return Ok(self.truncated()) };
        let expected = self.hasher.finalize_reset();
        if 32 > self.len - self.offset {
            return Ok(self.truncated());
        }
        let mut stored = [0u8; 32];
        self.inner.read_exact(&mut stored)?;
        self.offset += 32;
        self.in_segment = false;
        if count != self.segment_records {
            return Ok(self.corrupt(format!(
                "trailer says {count} records, the segment holds {}",
                self.segment_records
            )));
        }
        if stored[..] != expected[..] {
            return Ok(self.corrupt("SHA-256 mismatch"));
        }
        Ok(Item::SegmentEnd { checksum: hex::encode(stored), complete })
    }
}
