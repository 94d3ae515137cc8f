//! The landing layer in a local folder: `{data-dir}/landing/`, the same object names as in the
//! bucket. Files are only ever created, never replaced, and a crash leaves nothing partial
//! behind: each file is written as an anonymous inode (`O_TMPFILE`) in its folder, which has
//! no name until it is hard-linked to its real one after the batch's data is synced. The link
//! fails if the name exists, which is how a redelivery is recognised, with no replacement.
//! Durability is paid per batch, not per file: one `syncfs` before the links (the contents)
//! and one after (the directory entries). What GCS keeps as custom metadata is one extended
//! attribute here (`user.landfall`, a JSON object), set before the link.
//!
//! On a filesystem without `O_TMPFILE`, files are written under hidden temporary names
//! instead, and whatever such names a crash left behind are removed at start.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use rustix::fs::{AtFlags, CWD, Mode, OFlags, XattrFlags, linkat, openat, statat, unlinkat};
use rustix::io::Errno;

use super::{Listed, Object, Put, Store, format};
use crate::sink::sqlite::FileIdentity;
use crate::sink::{Access, SinkError, Unusable, blocking};

const NAME: &str = "landing";
/// Measured with benches/load.rs on this project's machines: 64 files a batch and 4 batches in
/// flight gave the best p99 at 256 connections (500 a batch: p99 60–130 ms; 64: 25–40 ms).
const MAX_BATCH: usize = 64;
const BATCHES_IN_FLIGHT: usize = 4;
const TEMP_SUFFIX: &str = ".tmp";
/// The extended attribute holding an object's metadata.
const METADATA_XATTR: &str = "user.landfall";

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

pub struct Folder {
    root: PathBuf,
    staging: Staging,
    /// The folder at `root`, as opened: files written into another (the folder moved or
    /// deleted and made anew) would not be where rows say they are.
    identity: Arc<FileIdentity>,
}

impl Folder {
    /// The landing folder at `root` (absolute: rows record it). `serve` creates it when
    /// missing; repair reads it, so it must be there; a dry run neither creates nor probes.
    pub fn open(root: PathBuf, access: Access) -> anyhow::Result<Self> {
        match access {
            Access::Serve => fs::create_dir_all(&root)
                .with_context(|| format!("failed to create landing folder {}", root.display()))?,
            Access::Repair | Access::ReadOnly if !root.is_dir() => {
                return Err(Unusable(format!(
                    "there is no landing layer at {} (is the data folder right?)",
                    root.display()
                ))
                .into());
            }
            Access::Repair | Access::ReadOnly => {}
        }
        let staging = match access {
            // Never written to: which staging the filesystem allows does not matter.
            Access::ReadOnly => Staging::Named,
            Access::Serve | Access::Repair => staging(&root)?,
        };
        if staging == Staging::Named && access != Access::ReadOnly {
            let swept = sweep(&root)?;
            tracing::warn!(
                folder = %root.display(),
                swept,
                "this filesystem has no O_TMPFILE: landing files are staged under temporary names"
            );
        }
        let identity = Arc::new(FileIdentity::of(&root)?);
        Ok(Self {
            root,
            staging,
            identity,
        })
    }

    pub fn staging(&self) -> Staging {
        self.staging
    }
}

#[async_trait]
impl Store for Folder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn create(&self, objects: Vec<Object>) -> Vec<Result<Put, SinkError>> {
        let (root, staging) = (self.root.clone(), self.staging);
        let identity = self.identity.clone();
        let len = objects.len();
        blocking(NAME, len, move || {
            identity.check()?;
            Ok(write_batch(&root, staging, &objects))
        })
        .await
    }

    async fn exists(&self, names: Vec<String>) -> Vec<Result<bool, SinkError>> {
        let root = self.root.clone();
        let len = names.len();
        blocking(NAME, len, move || {
            Ok(names.iter().map(|name| exists(&root, name)).collect())
        })
        .await
    }

    async fn read(&self, name: &str) -> anyhow::Result<Option<Bytes>> {
        let path = self.root.join(name);
        tokio::task::spawn_blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
        })
        .await?
    }

    fn list(&self, prefix: String) -> BoxStream<'static, anyhow::Result<Listed>> {
        let root = self.root.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            for item in walk(&root, &prefix) {
                if sender.blocking_send(item).is_err() {
                    return;
                }
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
    }

    async fn folders(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let path = root.join(&prefix);
            let entries = match fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to list {}", path.display()));
                }
            };
            let mut folders = Vec::new();
            for entry in entries {
                let entry = entry.with_context(|| format!("failed to list {}", path.display()))?;
                if entry.file_type()?.is_dir() {
                    folders.push(format!("{prefix}{}/", entry.file_name().to_string_lossy()));
                }
            }
            folders.sort();
            Ok(folders)
        })
        .await?
    }

    async fn check(&self) -> Result<(), SinkError> {
        let (root, staging) = (self.root.clone(), self.staging);
        let identity = self.identity.clone();
        tokio::task::spawn_blocking(move || {
            identity.check()?;
            probe(&root, staging)
        })
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
    fn max_batch_objects(&self) -> usize {
        MAX_BATCH
    }
}

fn exists(root: &Path, name: &str) -> Result<bool, SinkError> {
    match statat(CWD, root.join(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(false),
        Err(e) => Err(SinkError::new(
            NAME,
            &anyhow::Error::new(io::Error::from(e)).context(format!("failed to look for {name}")),
        )),
    }
}

/// The files under `root/prefix…`, in name order, with their metadata; temporary names are
/// not objects.
fn walk(root: &Path, prefix: &str) -> Vec<anyhow::Result<Listed>> {
    // The prefix may end inside a name (`output/order/2026/11/2`): walk from its folder.
    let start = match prefix.rsplit_once('/') {
        Some((folder, _)) => root.join(folder),
        None => root.to_path_buf(),
    };
    let mut found = Vec::new();
    let mut folders = vec![start];
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                found
                    .push(Err(anyhow::Error::new(e)
                        .context(format!("failed to list {}", folder.display()))));
                continue;
            }
        };
        for entry in entries {
            let listed = entry
                .map_err(anyhow::Error::from)
                .and_then(|entry| {
                    let path = entry.path();
                    let relative = path.strip_prefix(root)?.display().to_string();
                    if entry.file_type()?.is_dir() {
                        if leads_to(&relative, prefix) {
                            folders.push(path);
                        }
                        return Ok(None);
                    }
                    let hidden = entry.file_name().to_string_lossy().starts_with('.');
                    if hidden || !relative.starts_with(prefix) {
                        return Ok(None);
                    }
                    Ok(Some(listed(&path, relative)?))
                })
                .with_context(|| format!("failed to list {}", folder.display()));
            match listed {
                Ok(Some(listed)) => found.push(Ok(listed)),
                Ok(None) => {}
                Err(e) => found.push(Err(e)),
            }
        }
    }
    found.sort_by(|a, b| match (a, b) {
        (Ok(a), Ok(b)) => a.name.cmp(&b.name),
        _ => std::cmp::Ordering::Equal,
    });
    found
}

/// Whether objects under the folder `relative` can start with `prefix`.
fn leads_to(relative: &str, prefix: &str) -> bool {
    let folder = format!("{relative}/");
    prefix.starts_with(&folder) || folder.starts_with(prefix)
}

fn listed(path: &Path, name: String) -> anyhow::Result<Listed> {
    let modified = fs::metadata(path)?.modified()?;
    let mut buffer = vec![0u8; 16 * 1024];
    let metadata = match rustix::fs::getxattr(path, METADATA_XATTR, &mut buffer[..]) {
        Ok(len) => serde_json::from_slice(&buffer[..len])
            .with_context(|| format!("{} has unreadable metadata", path.display()))?,
        Err(Errno::NODATA | Errno::NOTSUP) => BTreeMap::new(),
        Err(e) => return Err(io::Error::from(e)).context("failed to read its metadata"),
    };
    Ok(Listed {
        name,
        metadata,
        created: DateTime::<Utc>::from(modified),
    })
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
    Done(Result<Put, SinkError>),
    Staged {
        dir: Arc<OwnedFd>,
        file: Staged,
        name: String,
    },
}

/// Folders of a batch, each opened once: the per-file calls then resolve a bare file name
/// relative to it instead of walking the whole path again.
type Folders = HashMap<String, Result<Arc<OwnedFd>, SinkError>>;

fn write_batch(root: &Path, staging: Staging, objects: &[Object]) -> Vec<Result<Put, SinkError>> {
    let mut folders = Folders::new();
    let staged: Vec<Pending> = objects
        .iter()
        .map(|o| stage(root, staging, &mut folders, o))
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

fn settled(pending: Pending) -> Result<Put, SinkError> {
    match pending {
        Pending::Done(result) => result,
        Pending::Staged { .. } => unreachable!("every staged file is linked before settling"),
    }
}

fn abandon(pending: Pending, error: &anyhow::Error) -> Result<Put, SinkError> {
    match pending {
        Pending::Staged { dir, file, .. } => {
            if let Staged::Named(temp) = file {
                let _ = unlinkat(&*dir, temp.as_str(), AtFlags::empty());
            }
            Err(SinkError::new(NAME, error))
        }
        Pending::Done(Ok(Put::Created)) => Err(SinkError::new(NAME, error)),
        Pending::Done(other) => other,
    }
}

fn stage(root: &Path, staging: Staging, folders: &mut Folders, object: &Object) -> Pending {
    let (folder, name) = object.name.rsplit_once('/').unwrap_or(("", &object.name));
    let dir = folders
        .entry(folder.to_string())
        .or_insert_with(|| open_folder(root, folder).map_err(|e| SinkError::new(NAME, &e)));
    let dir = match dir {
        Ok(dir) => dir.clone(),
        Err(e) => return Pending::Done(Err(e.clone())),
    };
    let metadata = object.metadata.as_slice();
    let written = match staging {
        Staging::Named => write_named(&dir, name, &object.body, metadata).map(Staged::Named),
        _ => write_anonymous(&dir, &object.body, metadata).map(Staged::Anonymous),
    };
    match written {
        Ok(file) => Pending::Staged {
            dir,
            file,
            name: name.to_string(),
        },
        Err(e) => Pending::Done(Err(SinkError::new(
            NAME,
            &e.context(format!("failed to write {}", object.name)),
        ))),
    }
}

fn metadata_json(metadata: &[(&'static str, String)]) -> Vec<u8> {
    if metadata.is_empty() {
        return Vec::new();
    }
    let map: BTreeMap<&str, &str> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
    serde_json::to_vec(&map).expect("a string map serialises")
}

/// Sets the metadata attribute. A filesystem without user attributes keeps the file without;
/// one whose attributes are too small for the message's attributes (ext4 holds about 4 KiB)
/// keeps the rest and says so, as a bucket would: the row holds every attribute.
fn set_metadata(fd: &OwnedFd, metadata: &[(&'static str, String)]) -> anyhow::Result<()> {
    if metadata.is_empty() {
        return Ok(());
    }
    let set = |metadata: &[(&'static str, String)]| {
        let value = metadata_json(metadata);
        match rustix::fs::fsetxattr(fd, METADATA_XATTR, &value, XattrFlags::empty()) {
            Err(Errno::NOTSUP) => Ok(()),
            other => other,
        }
    };
    let result = match set(metadata) {
        Err(Errno::NOSPC | Errno::TOOBIG | Errno::RANGE) => {
            set(&format::without_attributes(metadata))
        }
        other => other,
    };
    result
        .map_err(io::Error::from)
        .context("failed to set the file's metadata")
}

fn open_folder(root: &Path, folder: &str) -> anyhow::Result<Arc<OwnedFd>> {
    let path = root.join(folder);
    fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
    Ok(Arc::new(open_dir(&path)?))
}

fn write_anonymous(
    dir: &OwnedFd,
    body: &[u8],
    metadata: &[(&'static str, String)],
) -> anyhow::Result<OwnedFd> {
    let fd = anonymous(dir)
        .map_err(io::Error::from)
        .context("failed to create an anonymous file")?;
    set_metadata(&fd, metadata)?;
    let mut file = File::from(fd);
    file.write_all(body).context("failed to write")?;
    Ok(file.into())
}

fn write_named(
    dir: &OwnedFd,
    name: &str,
    body: &[u8],
    metadata: &[(&'static str, String)],
) -> anyhow::Result<String> {
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
    set_metadata(&fd, metadata)?;
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
        Ok(()) => Ok(Put::Created),
        // The name exists: an earlier delivery of this message landed it.
        Err(Errno::EXIST) => Ok(Put::AlreadyPresent),
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
        Staging::Named => write_named(&dir, "ready-probe", b"probe", &[]).map(|temp| {
            let _ = unlinkat(&dir, temp.as_str(), AtFlags::empty());
        }),
        _ => write_anonymous(&dir, b"probe", &[]).map(drop),
    };
    result.with_context(|| format!("cannot write to {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_filesystem_stages_files_without_names() {
        let dir = tempfile::tempdir().unwrap();
        // Not ours to sweep: without named staging a start does not walk the landing layer.
        let foreign = dir.path().join(".foreign.tmp");
        fs::write(&foreign, b"x").unwrap();
        let landing = Folder::open(dir.path().to_path_buf(), Access::Serve).unwrap();
        assert_ne!(
            landing.staging(),
            Staging::Named,
            "tests run where O_TMPFILE works"
        );
        fs::remove_file(&foreign).expect("a start without named staging sweeps nothing");
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
        // Only what staging names: hidden and ending in `.tmp`.
        let kept = ["order_1.json", ".order_2.json", "order_3.tmp"];
        for name in kept {
            fs::write(nested.join(name), b"{}").unwrap();
        }
        assert_eq!(sweep(dir.path()).unwrap(), 1);
        let mut left: Vec<_> = fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".order_2.json", "order_1.json", "order_3.tmp"]);
    }

    #[test]
    fn named_staging_still_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let fd = Arc::new(open_dir(dir.path()).unwrap());
        for expected in [Put::Created, Put::AlreadyPresent] {
            let temp = write_named(&fd, "a.json", b"x", &[]).unwrap();
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

    fn names(listed: Vec<anyhow::Result<Listed>>) -> Vec<String> {
        listed.into_iter().map(|l| l.unwrap().name).collect()
    }

    #[test]
    fn a_listing_is_every_object_under_the_prefix_in_name_order_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for day in ["22", "20", "19", "21"] {
            let folder = dir.path().join(format!("out/order/2026/11/{day}"));
            fs::create_dir_all(&folder).unwrap();
            for i in (0..8).rev() {
                fs::write(folder.join(format!("{i}.json")), b"{}").unwrap();
                fs::write(folder.join(format!(".{i}.json.1-2.tmp")), b"{").unwrap();
                if day != "19" {
                    expected.push(format!("out/order/2026/11/{day}/{i}.json"));
                }
            }
        }
        fs::create_dir_all(dir.path().join("out/inventory/2026/11/20")).unwrap();
        fs::write(dir.path().join("out/inventory/2026/11/20/0.json"), b"{}").unwrap();
        expected.sort();
        // The prefix ends inside a folder's name, as a time range's does.
        assert_eq!(names(walk(dir.path(), "out/order/2026/11/2")), expected);
        assert!(leads_to("out/order", "out/order/2026/11/2"));
        assert!(leads_to("out/order/2026/11/21", "out/order/2026/11/2"));
        assert!(!leads_to("out/order/2026/11/19", "out/order/2026/11/2"));
        assert!(!leads_to("out/inventory", "out/order/2026/11/2"));
    }

    #[test]
    fn a_listing_of_nothing_is_empty_and_one_that_cannot_be_read_says_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(walk(dir.path(), "out/order/2026/").is_empty());
        fs::write(dir.path().join("out"), b"a file where a folder belongs").unwrap();
        let listed = walk(dir.path(), "out/order/");
        let [Err(error)] = &listed[..] else {
            panic!("one error, not {listed:?}");
        };
        assert!(
            format!("{error:#}").starts_with("failed to list"),
            "{error:#}"
        );
        assert!(
            open_dir(&dir.path().join("out")).is_err(),
            "a file is no folder"
        );
    }

    fn object(name: &str, body: &[u8], metadata: Vec<(&'static str, String)>) -> Object {
        Object {
            name: name.into(),
            body: Bytes::copy_from_slice(body),
            content_type: "application/json",
            metadata,
        }
    }

    #[tokio::test]
    async fn objects_are_created_once_and_listed_back_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Folder::open(dir.path().to_path_buf(), Access::Serve).unwrap();
        let first = vec![
            object("out/a/1.json", b"one", vec![("message_id", "1".into())]),
            object("out/b/2.json", b"two", vec![]),
        ];
        assert_eq!(
            folder.create(first).await,
            vec![Ok(Put::Created), Ok(Put::Created)]
        );
        let again = vec![object("out/a/1.json", b"other", vec![])];
        assert_eq!(folder.create(again).await, vec![Ok(Put::AlreadyPresent)]);
        assert_eq!(
            folder.read("out/a/1.json").await.unwrap().unwrap(),
            &b"one"[..]
        );
        assert_eq!(folder.read("out/a/9.json").await.unwrap(), None);
        assert_eq!(
            folder
                .exists(vec![
                    "out/a/1.json".into(),
                    "out/a/9.json".into(),
                    "nope/x".into()
                ])
                .await,
            vec![Ok(true), Ok(false), Ok(false)]
        );
        use futures::StreamExt;
        let listed: Vec<Listed> = folder
            .list("out/a".into())
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "out/a/1.json");
        assert_eq!(listed[0].metadata["message_id"], "1");
        let all: Vec<String> = folder
            .list("out/".into())
            .map(|l| l.unwrap().name)
            .collect()
            .await;
        assert_eq!(all, ["out/a/1.json", "out/b/2.json"]);
    }
}
