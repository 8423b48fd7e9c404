//! An append-only JSON-lines file that is fsynced on every append and
//! rewritten whole (atomically) when it has grown enough: how the committed
//! offsets and the transaction state persist on a broker.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file is never compacted below this size: rewriting a small file on
/// every few commits would cost more than the bytes it saves.
pub const COMPACTION_FLOOR_BYTES: u64 = 16 * 1024 * 1024;

/// Whether a lines file should be rewritten with only the live state:
/// once it is over twice the size it had after the last compaction (and over
/// `floor_bytes`). The file then stays within a constant factor of the
/// table, and each rewrite is paid for by as many appended bytes.
pub fn needs_compaction(file_bytes: u64, compacted_bytes: u64, floor_bytes: u64) -> bool {
    file_bytes > compacted_bytes.saturating_mul(2).max(floor_bytes)
}

/// The append side of a JSON-lines file. Its owner holds its lock from an
/// append through the update of the table the file describes (and any
/// compaction), which is what keeps the file and the table in one order.
pub(crate) struct LineFile {
    pub(crate) path: PathBuf,
    /// `None` after a compaction could not reopen the file; the next change
    /// retries the open rather than appending to a replaced file.
    pub(crate) file: Option<File>,
    /// The file's length now.
    pub(crate) file_bytes: u64,
    /// The file's length right after the last compaction.
    pub(crate) compacted_bytes: u64,
    pub(crate) compaction_floor_bytes: u64,
}

/// Hands every line of the file at `path` that parses as an `L` to
/// `apply`, in order; a missing file has none. A line that does not parse
/// (a torn last line: a crash mid-write, never acknowledged) is skipped
/// with a warning naming `what`.
pub(crate) fn read_lines<L: serde::de::DeserializeOwned>(path: &Path, what: &str, mut apply: impl FnMut(L)) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in text.lines() {
        match serde_json::from_str::<L>(line) {
            Ok(parsed) => apply(parsed),
            Err(e) => tracing::warn!(error = %e, file = what, "skipping an unreadable line"),
        }
    }
    Ok(())
}

impl LineFile {
    /// Rewrites `path` as `compacted` (the table just loaded), atomically,
    /// and opens it for appends.
    pub(crate) fn rewrite_and_open(path: &Path, compacted: &[u8]) -> std::io::Result<Self> {
        crate::coordination::embedded::write_atomically(path, compacted)?;
        Self::open(path, compacted.len() as u64)
    }

    /// Opens `path` (just rewritten to `compacted_bytes` bytes) for appends.
    fn open(path: &Path, compacted_bytes: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            file_bytes: compacted_bytes,
            compacted_bytes,
            compaction_floor_bytes: COMPACTION_FLOOR_BYTES,
        })
    }

    /// Whether the file has grown enough to be rewritten (`needs_compaction`).
    pub(crate) fn needs_compaction(&self) -> bool {
        needs_compaction(self.file_bytes, self.compacted_bytes, self.compaction_floor_bytes)
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("lines file is not open"));
        };
        let before = file.metadata()?.len();
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        if written.is_err() {
            // Cut a partial line off so the next commit starts on a line of
            // its own and stays readable after a restart.
            let _ = file.set_len(before);
        } else {
            self.file_bytes = before + bytes.len() as u64;
        }
        written
    }

    /// Rewrites the file as `bytes` (the compacted table), atomically.
    /// Called with the appender locked, so no change can be appended to the
    /// old file after the table was serialized and be lost with it.
    pub(crate) fn rewrite(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let rewritten = crate::coordination::embedded::write_atomically(&self.path, bytes);
        // Whether or not the rename happened, appends must go to whatever
        // file is at the path now.
        self.file = None;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.file_bytes = file.metadata()?.len();
        self.file = Some(file);
        rewritten?;
        self.compacted_bytes = bytes.len() as u64;
        Ok(())
    }
}
