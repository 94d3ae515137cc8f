//! The embedded landing layer: one file per record under `{data-dir}/landing/`, the same
//! object names as in the bucket.
//!
//! A file appears whole or not at all: it is written under a hidden temporary name, synced,
//! then hard-linked to its real name, which fails if the name exists. That failure is how a
//! redelivery is recognised, with no replacement and no window where a reader sees half a file.
//! Durability is paid per batch, not per file: one `syncfs` before the links (the contents)
//! and one after (the directory entries).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;

use super::{Sink, SinkError, Written};
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
        let len = batch.len();
        tokio::task::spawn_blocking(move || write_batch(&root, &batch))
            .await
            .unwrap_or_else(|e| {
                let error = anyhow::anyhow!("landing writer failed: {e}");
                vec![Err(SinkError::new(NAME, &error)); len]
            })
    }

    async fn check(&self) -> Result<(), SinkError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || probe(&root))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
            .map_err(|e| SinkError::new(NAME, &e))
    }
}

/// A record waiting for its link, or already settled.
enum Pending {
    Done(Result<Written, SinkError>),
    Staged { temp: PathBuf, target: PathBuf },
}

fn write_batch(root: &Path, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
    let staged: Vec<Pending> = batch.iter().map(|r| stage(root, r)).collect();
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
    if let Pending::Staged { temp, .. } = &pending {
        let _ = fs::remove_file(temp);
    }
    match pending {
        Pending::Done(Ok(Written::AlreadyPresent)) => Ok(Written::AlreadyPresent),
        Pending::Done(Err(e)) => Err(e),
        _ => Err(SinkError::new(NAME, error)),
    }
}

fn stage(root: &Path, record: &Record) -> Pending {
    let target = root.join(&record.object_name);
    if target.exists() {
        return Pending::Done(Ok(Written::AlreadyPresent));
    }
    match write_temp(&target, &record.object_body) {
        Ok(temp) => Pending::Staged { temp, target },
        Err(e) => Pending::Done(Err(SinkError::new(NAME, &e))),
    }
}

fn write_temp(target: &Path, body: &[u8]) -> anyhow::Result<PathBuf> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().context("object name has no folder")?;
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let file_name = target
        .file_name()
        .context("object name has no file name")?
        .to_string_lossy();
    // Unique within this process; the pid separates processes sharing the folder.
    let temp = dir.join(format!(
        ".{file_name}.{}-{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file =
        File::create_new(&temp).with_context(|| format!("failed to create {}", temp.display()))?;
    file.write_all(body)
        .with_context(|| format!("failed to write {}", temp.display()))?;
    Ok(temp)
}

fn link(pending: Pending) -> Pending {
    let Pending::Staged { temp, target } = pending else {
        return pending;
    };
    let result = match fs::hard_link(&temp, &target) {
        Ok(()) => Ok(Written::Created),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Written::AlreadyPresent),
        Err(e) => Err(SinkError::new(
            NAME,
            &anyhow::Error::new(e).context(format!("failed to link {}", target.display())),
        )),
    };
    let _ = fs::remove_file(&temp);
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
