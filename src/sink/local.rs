//! The embedded landing layer: one file per record under `{data-dir}/landing/`, the same
//! object names as in the bucket.
//!
//! A file appears whole or not at all: it is written under a hidden temporary name, synced,
//! then hard-linked to its real name, which fails if the name exists. That failure is how a
//! redelivery is recognised, with no replacement and no window where a reader sees half a file.
//! Durability is paid per batch, not per file: one `syncfs` before the links (the contents)
//! and one after (the directory entries).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;
use rustix::fs::{AtFlags, CWD, Mode, OFlags, linkat, openat, unlinkat};
use rustix::io::Errno;

use super::{Sink, SinkError, Written, on_blocking_thread};
use crate::event::Record;

const NAME: &str = "landing";

pub struct LocalLanding {
    root: PathBuf,
}

impl LocalLanding {
    /// Creates the landing folder if needed; `root` should be absolute, since rows record it.
    pub fn open(root: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir_all(&root)
            .with_context(|| format!("failed to create landing folder {}", root.display()))?;
        Ok(Self { root })
    }

    /// The URI prefix rows record for objects in this folder.
    pub fn base_uri(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[async_trait]
impl Sink for LocalLanding {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn write(&self, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
        let root = self.root.clone();
        let batch = batch.to_vec();
        on_blocking_thread(NAME, batch.len(), move || Ok(write_batch(&root, &batch))).await
    }

    async fn check(&self) -> Result<(), SinkError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || probe(&root))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
            .map_err(|e| SinkError::new(NAME, &e))
    }

    /// Batches are independent files, and `syncfs` flushes whatever any of them wrote, so
    /// several can be written at once: file creation waits on the disk, not the CPU.
    fn batches_in_flight(&self) -> usize {
        4
    }
}

/// A record waiting for its link, or already settled.
enum Pending {
    Done(Result<Written, SinkError>),
    Staged {
        dir: Arc<OwnedFd>,
        temp: String,
        name: String,
    },
}

/// Folders of a batch, each opened once: the per-file calls then resolve a bare file name
/// relative to it instead of walking the whole path again.
type Folders = HashMap<String, Result<Arc<OwnedFd>, SinkError>>;

fn write_batch(root: &Path, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
    let mut folders = Folders::new();
    let staged: Vec<Pending> = batch.iter().map(|r| stage(root, &mut folders, r)).collect();
    if !staged.iter().any(|p| matches!(p, Pending::Staged { .. })) {
        return staged.into_iter().map(settled).collect();
    }
    if let Err(e) = sync(root) {
        return staged.into_iter().map(|p| abandon(p, &e)).collect();
    }
    let linked: Vec<Pending> = staged.into_iter().map(link).collect();
    match sync(root) {
        Ok(()) => linked.into_iter().map(settled).collect(),
        // The links may not survive a crash: report failure so Pub/Sub redelivers.
        Err(e) => linked.into_iter().map(|p| abandon(p, &e)).collect(),
    }
}

fn settled(pending: Pending) -> Result<Written, SinkError> {
    match pending {
        Pending::Done(result) => result,
        Pending::Staged { .. } => unreachable!("every staged file is linked before settling"),
    }
}

fn abandon(pending: Pending, error: &anyhow::Error) -> Result<Written, SinkError> {
    match pending {
        Pending::Staged { dir, temp, .. } => {
            let _ = unlinkat(&*dir, temp.as_str(), AtFlags::empty());
            Err(SinkError::new(NAME, error))
        }
        Pending::Done(Ok(Written::Created)) => Err(SinkError::new(NAME, error)),
        Pending::Done(other) => other,
    }
}

fn stage(root: &Path, folders: &mut Folders, record: &Record) -> Pending {
    let (folder, name) = record
        .object_name
        .rsplit_once('/')
        .unwrap_or(("", &record.object_name));
    let dir = folders
        .entry(folder.to_string())
        .or_insert_with(|| open_folder(root, folder).map_err(|e| SinkError::new(NAME, &e)));
    let dir = match dir {
        Ok(dir) => dir.clone(),
        Err(e) => return Pending::Done(Err(e.clone())),
    };
    match write_temp(&dir, name, &record.object_body) {
        Ok(temp) => Pending::Staged {
            dir,
            temp,
            name: name.to_string(),
        },
        Err(e) => Pending::Done(Err(SinkError::new(
            NAME,
            &e.context(format!("failed to write {}", record.object_name)),
        ))),
    }
}

fn open_folder(root: &Path, folder: &str) -> anyhow::Result<Arc<OwnedFd>> {
    let path = root.join(folder);
    fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = openat(CWD, &path, flags, Mode::empty())
        .with_context(|| format!("failed to open {}", path.display()))?;
    Ok(Arc::new(dir))
}

fn write_temp(dir: &OwnedFd, name: &str, body: &[u8]) -> anyhow::Result<String> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // Hidden, and unique: the pid separates processes sharing the folder.
    let temp = format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let fd = openat(dir, temp.as_str(), flags, Mode::from_raw_mode(0o644))
        .with_context(|| format!("failed to create {temp}"))?;
    File::from(fd)
        .write_all(body)
        .with_context(|| format!("failed to write {temp}"))?;
    Ok(temp)
}

fn link(pending: Pending) -> Pending {
    let Pending::Staged { dir, temp, name } = pending else {
        return pending;
    };
    let result = match linkat(&*dir, temp.as_str(), &*dir, name.as_str(), AtFlags::empty()) {
        Ok(()) => Ok(Written::Created),
        // The name exists: an earlier delivery of this message landed it.
        Err(Errno::EXIST) => Ok(Written::AlreadyPresent),
        Err(e) => Err(SinkError::new(
            NAME,
            &anyhow::Error::new(io::Error::from(e)).context(format!("failed to link {name}")),
        )),
    };
    let _ = unlinkat(&*dir, temp.as_str(), AtFlags::empty());
    Pending::Done(result)
}

/// Flushes everything written to the filesystem holding `root`: one call for the whole batch.
fn sync(root: &Path) -> anyhow::Result<()> {
    let dir = File::open(root).with_context(|| format!("failed to open {}", root.display()))?;
    rustix::fs::syncfs(&dir).with_context(|| format!("failed to sync {}", root.display()))
}

fn probe(root: &Path) -> anyhow::Result<()> {
    let path = root.join(format!(".ready-probe-{}", std::process::id()));
    fs::write(&path, b"probe").with_context(|| format!("cannot write to {}", root.display()))?;
    fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
}
