//! The embedded landing layer: one file per record under `{data-dir}/landing/`, the same
//! object names as in the bucket.
//!
//! A file appears whole or not at all, and a crash leaves nothing partial behind: each file is
//! written as an anonymous inode (`O_TMPFILE`) in its folder, which has no name until it is
//! hard-linked to its real one after the batch's data is synced. The link fails if the name
//! exists, which is how a redelivery is recognised, with no replacement. Durability is paid
//! per batch, not per file: one `syncfs` before the links (the contents) and one after (the
//! directory entries).
//!
//! On a filesystem without `O_TMPFILE`, files are written under hidden temporary names
//! instead, and whatever such names a crash left behind are removed at start.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;
use rustix::fs::{AtFlags, CWD, Mode, OFlags, linkat, openat, unlinkat};
use rustix::io::Errno;

use super::{Entry, Layer, Sink, SinkError, Written, on_blocking_thread};

const NAME: &str = "landing";
/// Measured with benches/load.rs on this project's machines: 64 files a batch and 4 batches in
/// flight gave the best p99 at 256 connections (500 a batch: p99 60–130 ms; 64: 25–40 ms).
const MAX_BATCH: usize = 64;
const BATCHES_IN_FLIGHT: usize = 4;
const TEMP_SUFFIX: &str = ".tmp";

/// How a file is held between its write and its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// An `O_TMPFILE` inode, linked by its descriptor (`AT_EMPTY_PATH`).
    Anonymous,
    /// An `O_TMPFILE` inode, linked through `/proc/self/fd` (without `CAP_DAC_READ_SEARCH`,
    /// which `AT_EMPTY_PATH` wants).
    AnonymousViaProc,
    /// A hidden temporary name (no `O_TMPFILE` on this filesystem), swept at start.
    Named,
}

pub struct LocalLanding {
    root: PathBuf,
    staging: Staging,
}

impl LocalLanding {
    /// Creates the landing folder if needed; `root` should be absolute, since rows record it.
    pub fn open(root: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir_all(&root)
            .with_context(|| format!("failed to create landing folder {}", root.display()))?;
        let staging = staging(&root)?;
        if staging == Staging::Named {
            let swept = sweep(&root)?;
            tracing::warn!(
                folder = %root.display(),
                swept,
                "this filesystem has no O_TMPFILE: landing files are staged under temporary names"
            );
        }
        Ok(Self { root, staging })
    }

    /// The URI prefix rows record for objects in this folder.
    pub fn base_uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    pub fn staging(&self) -> Staging {
        self.staging
    }
}

#[async_trait]
impl Sink for LocalLanding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn layer(&self) -> Layer {
        Layer::Landing
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        let (root, staging) = (self.root.clone(), self.staging);
        let batch = batch.to_vec();
        on_blocking_thread(NAME, batch.len(), move || {
            Ok(write_batch(&root, staging, &batch))
        })
        .await
    }

    async fn check(&self) -> Result<(), SinkError> {
        let (root, staging) = (self.root.clone(), self.staging);
        tokio::task::spawn_blocking(move || probe(&root, staging))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
            .map_err(|e| SinkError::new(NAME, &e))
    }

    /// Batches are independent files, and `syncfs` flushes whatever any of them wrote, so
    /// several can be written at once.
    fn batches_in_flight(&self) -> usize {
        BATCHES_IN_FLIGHT
    }

    /// A batch's files are created one after another and all its requests wait for the last:
    /// smaller batches let requests go sooner, and the sync they share costs little.
    fn max_batch_events(&self) -> usize {
        MAX_BATCH
    }
}

/// Which [`Staging`] this filesystem and these privileges allow, found by trying.
fn staging(root: &Path) -> anyhow::Result<Staging> {
    let dir = open_dir(root)?;
    let file = match anonymous(&dir) {
        Ok(file) => file,
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return Ok(Staging::Named),
        Err(e) => {
            return Err(io::Error::from(e))
                .with_context(|| format!("cannot create files in {}", root.display()));
        }
    };
    let probe = format!(".link-probe-{}", std::process::id());
    let mut result = Staging::Named;
    for staging in [Staging::Anonymous, Staging::AnonymousViaProc] {
        if link_anonymous(&file, &dir, &probe, staging).is_ok() {
            result = staging;
            break;
        }
    }
    let _ = unlinkat(&dir, probe.as_str(), AtFlags::empty());
    Ok(result)
}

/// Removes the temporary files that a crash left behind under `root` (named staging only).
fn sweep(root: &Path) -> anyhow::Result<usize> {
    let mut swept = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = fs::read_dir(&folder)
            .with_context(|| format!("failed to read {}", folder.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read {}", folder.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type()?.is_dir() {
                folders.push(entry.path());
            } else if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path())
                    .with_context(|| format!("failed to remove {}", entry.path().display()))?;
                swept += 1;
            }
        }
    }
    Ok(swept)
}

fn open_dir(path: &Path) -> anyhow::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    openat(CWD, path, flags, Mode::empty())
        .map_err(io::Error::from)
        .with_context(|| format!("failed to open {}", path.display()))
}

fn anonymous(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    openat(dir, ".", flags, Mode::from_raw_mode(0o644))
}

fn link_anonymous(
    file: &OwnedFd,
    dir: &OwnedFd,
    name: &str,
    staging: Staging,
) -> Result<(), Errno> {
    match staging {
        Staging::Anonymous => linkat(file, "", dir, name, AtFlags::EMPTY_PATH),
        _ => {
            let path = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
            linkat(CWD, path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
        }
    }
}

/// A file written but not yet given its name.
enum Staged {
    Anonymous(OwnedFd),
    Named(String),
}

/// A record waiting for its link, or already settled.
enum Pending {
    Done(Result<Written, SinkError>),
    Staged {
        dir: Arc<OwnedFd>,
        file: Staged,
        name: String,
    },
}

/// Folders of a batch, each opened once: the per-file calls then resolve a bare file name
/// relative to it instead of walking the whole path again.
type Folders = HashMap<String, Result<Arc<OwnedFd>, SinkError>>;

fn write_batch(root: &Path, staging: Staging, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
    let mut folders = Folders::new();
    let staged: Vec<Pending> = batch
        .iter()
        .map(|e| {
            stage(
                root,
                staging,
                &mut folders,
                &e.record.object_name,
                &e.record.object_body,
            )
        })
        .collect();
    if !staged.iter().any(|p| matches!(p, Pending::Staged { .. })) {
        return staged.into_iter().map(settled).collect();
    }
    if let Err(e) = sync(root) {
        return staged.into_iter().map(|p| abandon(p, &e)).collect();
    }
    let linked: Vec<Pending> = staged.into_iter().map(|p| link(p, staging)).collect();
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
        Pending::Staged { dir, file, .. } => {
            if let Staged::Named(temp) = file {
                let _ = unlinkat(&*dir, temp.as_str(), AtFlags::empty());
            }
            Err(SinkError::new(NAME, error))
        }
        Pending::Done(Ok(Written::Created)) => Err(SinkError::new(NAME, error)),
        Pending::Done(other) => other,
    }
}

fn stage(
    root: &Path,
    staging: Staging,
    folders: &mut Folders,
    object: &str,
    body: &[u8],
) -> Pending {
    let (folder, name) = object.rsplit_once('/').unwrap_or(("", object));
    let dir = folders
        .entry(folder.to_string())
        .or_insert_with(|| open_folder(root, folder).map_err(|e| SinkError::new(NAME, &e)));
    let dir = match dir {
        Ok(dir) => dir.clone(),
        Err(e) => return Pending::Done(Err(e.clone())),
    };
    let written = match staging {
        Staging::Named => write_named(&dir, name, body).map(Staged::Named),
        _ => write_anonymous(&dir, body).map(Staged::Anonymous),
    };
    match written {
        Ok(file) => Pending::Staged {
            dir,
            file,
            name: name.to_string(),
        },
        Err(e) => Pending::Done(Err(SinkError::new(
            NAME,
            &e.context(format!("failed to write {object}")),
        ))),
    }
}

fn open_folder(root: &Path, folder: &str) -> anyhow::Result<Arc<OwnedFd>> {
    let path = root.join(folder);
    fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
    Ok(Arc::new(open_dir(&path)?))
}

fn write_anonymous(dir: &OwnedFd, body: &[u8]) -> anyhow::Result<OwnedFd> {
    let fd = anonymous(dir)
        .map_err(io::Error::from)
        .context("failed to create an anonymous file")?;
    let mut file = File::from(fd);
    file.write_all(body).context("failed to write")?;
    Ok(file.into())
}

fn write_named(dir: &OwnedFd, name: &str, body: &[u8]) -> anyhow::Result<String> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // Hidden, and unique: the pid separates processes sharing the folder.
    let temp = format!(
        ".{name}.{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let fd = openat(dir, temp.as_str(), flags, Mode::from_raw_mode(0o644))
        .map_err(io::Error::from)
        .with_context(|| format!("failed to create {temp}"))?;
    File::from(fd)
        .write_all(body)
        .with_context(|| format!("failed to write {temp}"))?;
    Ok(temp)
}

fn link(pending: Pending, staging: Staging) -> Pending {
    let Pending::Staged { dir, file, name } = pending else {
        return pending;
    };
    let linked = match &file {
        Staged::Anonymous(fd) => link_anonymous(fd, &dir, &name, staging),
        Staged::Named(temp) => linkat(&*dir, temp.as_str(), &*dir, name.as_str(), AtFlags::empty()),
    };
    let result = match linked {
        Ok(()) => Ok(Written::Created),
        // The name exists: an earlier delivery of this message landed it.
        Err(Errno::EXIST) => Ok(Written::AlreadyPresent),
        Err(e) => Err(SinkError::new(
            NAME,
            &anyhow::Error::new(io::Error::from(e)).context(format!("failed to link {name}")),
        )),
    };
    if let Staged::Named(temp) = file {
        let _ = unlinkat(&*dir, temp.as_str(), AtFlags::empty());
    }
    Pending::Done(result)
}

/// Flushes everything written to the filesystem holding `root`: one call for the whole batch.
fn sync(root: &Path) -> anyhow::Result<()> {
    let dir = File::open(root).with_context(|| format!("failed to open {}", root.display()))?;
    rustix::fs::syncfs(&dir).with_context(|| format!("failed to sync {}", root.display()))
}

/// Proves the folder takes a new file, without leaving one behind.
fn probe(root: &Path, staging: Staging) -> anyhow::Result<()> {
    let dir = open_dir(root).with_context(|| format!("cannot write to {}", root.display()))?;
    let result = match staging {
        Staging::Named => write_named(&dir, "ready-probe", b"probe").map(|temp| {
            let _ = unlinkat(&dir, temp.as_str(), AtFlags::empty());
        }),
        _ => write_anonymous(&dir, b"probe").map(drop),
    };
    result.with_context(|| format!("cannot write to {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_filesystem_stages_files_without_names() {
        let dir = tempfile::tempdir().unwrap();
        let landing = LocalLanding::open(dir.path().to_path_buf()).unwrap();
        assert_ne!(
            landing.staging(),
            Staging::Named,
            "tests run where O_TMPFILE works"
        );
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the probe left nothing"
        );
    }

    #[test]
    fn the_named_fallback_sweeps_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("output/order/2026");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join(".order_1.json.77-3.tmp"), b"half").unwrap();
        fs::write(nested.join("order_1.json"), b"{}").unwrap();
        assert_eq!(sweep(dir.path()).unwrap(), 1);
        let left: Vec<_> = fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["order_1.json"]);
    }

    #[test]
    fn named_staging_still_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let fd = Arc::new(open_dir(dir.path()).unwrap());
        for expected in [Written::Created, Written::AlreadyPresent] {
            let temp = write_named(&fd, "a.json", b"x").unwrap();
            let pending = Pending::Staged {
                dir: fd.clone(),
                file: Staged::Named(temp),
                name: "a.json".into(),
            };
            assert_eq!(settled(link(pending, Staging::Named)), Ok(expected));
        }
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["a.json"]);
    }
}
