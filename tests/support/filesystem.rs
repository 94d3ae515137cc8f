//! Filesystems for what a temporary folder on a large disk does not have: a small ext4
//! filesystem on a loop device (a few KiB of extended attributes per file, a disk that fills
//! up), and a FUSE mount without O_TMPFILE. Mounting needs root: where it is not allowed,
//! the test says so and stops (`mount` returns `None`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::tools::tool;

pub struct Ext4 {
    _image_dir: tempfile::TempDir,
    mount_point: tempfile::TempDir,
}

impl Ext4 {
    /// A fresh ext4 filesystem of `megabytes`, mounted on a folder of its own.
    pub fn mount(megabytes: u64) -> Option<Self> {
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let made = Command::new("mkfs.ext4")
            // No blocks reserved for root: the tests run as root, and the disk must fill.
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .status();
        let mount_point = tempfile::tempdir().unwrap();
        let mounted = made.is_ok_and(|s| s.success())
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(mount_point.path())
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "SKIPPED: cannot make and mount an ext4 image here (the test needs root and loop devices)"
            );
            return None;
        }
        Some(Self {
            _image_dir: image_dir,
            mount_point,
        })
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// A folder on it.
    pub fn folder(&self, name: &str) -> PathBuf {
        let folder = self.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    /// Remounts it read-only (`true`) or writable again (`false`).
    pub fn read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let remounted = Command::new("mount")
            .args(["-o", mode])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(remounted.success(), "mount -o {mode} failed");
    }

    /// Takes every free byte but `leave`, with a file of its own.
    pub fn fill(&self, leave: u64) {
        let free = rustix::fs::statvfs(self.path()).unwrap();
        let free = free.f_bavail * free.f_frsize;
        let filler = std::fs::File::create(self.path().join("filler")).unwrap();
        use std::io::Write;
        let mut filler = std::io::BufWriter::new(filler);
        let chunk = vec![0u8; 1 << 16];
        let mut written = 0;
        while written + leave < free {
            match filler.write_all(&chunk) {
                Ok(()) => written += chunk.len() as u64,
                Err(_) => break,
            }
        }
        let _ = filler.flush();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        unmount(self.mount_point.path());
    }
}

/// Detaches a mount at once, even while something still has a file open on it.
fn unmount(mount_point: &Path) {
    let _ = Command::new("umount").arg("-l").arg(mount_point).status();
}

/// A folder served again through FUSE by libfuse 2, which has no tmpfile operation: on it,
/// `open(O_TMPFILE)` fails as on any filesystem without it (`tests/support/passthrough.py`).
pub struct WithoutTmpfile {
    /// Where the files really are, to look at them without the mount.
    source: tempfile::TempDir,
    mount_point: tempfile::TempDir,
    server: Child,
}

impl WithoutTmpfile {
    pub fn mount() -> Option<Self> {
        let python = tool("fuse", "FUSE_PYTHON");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/passthrough.py");
        let (source, mount_point) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let server = Command::new(python)
            .arg(script)
            .arg(source.path())
            .arg(mount_point.path())
            .spawn()
            .expect("python runs");
        let mut mounted = Self {
            source,
            mount_point,
            server,
        };
        let served =
            super::poll::until_blocking(
                "the FUSE mount",
                Duration::from_secs(20),
                || match mounted.server.try_wait().unwrap() {
                    Some(exit) => Ok(Err(exit)),
                    None if mounted.is_mounted() => Ok(Ok(())),
                    None => Err("not mounted yet".to_string()),
                },
            );
        if let Err(exit) = served {
            eprintln!(
                "SKIPPED: cannot mount a FUSE filesystem here ({exit}; the test needs root and /dev/fuse)"
            );
            return None;
        }
        Some(mounted)
    }

    fn is_mounted(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let point = self.mount_point.path().to_str().unwrap();
        mounts
            .lines()
            .any(|line| line.split(' ').nth(1) == Some(point))
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// The same folder, not through the mount.
    pub fn source(&self) -> &Path {
        self.source.path()
    }
}

impl Drop for WithoutTmpfile {
    fn drop(&mut self) {
        unmount(self.mount_point.path());
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
