//! Network namespaces: run code on a thread inside a Pod's namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling *thread* only.
//! [`run_in`] does it on a new OS thread that ends when the closure returns,
//! so no thread ever goes back to a pool (or back to `main`) in the wrong
//! namespace, and no early return can skip a switch back.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

/// A namespace operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file does not exist (the Pod may be gone).
    #[error(
        "network namespace {path}: no such file (it must be a netns file such as \
         /var/run/netns/NAME or /proc/PID/ns/net)"
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Opening the namespace file failed for another reason.
    #[error("open network namespace {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `fstatfs` or `NS_GET_NSTYPE` on the opened file failed.
    #[error("inspect network namespace file {path} ({what}): {source}")]
    Inspect {
        /// The path given.
        path: PathBuf,
        /// Which call failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file exists but is not a network namespace.
    #[error(
        "{path} is not a network namespace: {reason} (it must be a netns file such as \
         /var/run/netns/NAME or /proc/PID/ns/net)"
    )]
    NotNetns {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        reason: &'static str,
    },
    /// `setns(CLONE_NEWNET)` failed on the worker thread.
    #[error("setns(CLONE_NEWNET) into {path}: {source}")]
    Setns {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The OS thread could not be started.
    #[error("spawn a thread to enter network namespace {path}: {source}")]
    Spawn {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Run `f` on a new OS thread that has entered the network namespace at
/// `path` (`/var/run/netns/NAME` or `/proc/PID/ns/net`), and return its
/// result. The thread ends afterwards.
///
/// Sockets, TAP fds and netlink sockets opened inside `f` belong to that
/// namespace and keep working from any thread. A panic in `f` is resumed on
/// the calling thread.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let ns = open_netns(path)?;
    let owned_path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("vsw-netns".into())
        .spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Setns {
                path: owned_path,
                source: e.into(),
            })?;
            drop(ns);
            Ok(f())
        })
        .map_err(|source| NetnsError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Whether `path` is a network namespace file.
///
/// Checked on the opened file: it must live on nsfs (`fstatfs` gives
/// `NSFS_MAGIC`, so the ioctl below cannot reach another driver), and the
/// `NS_GET_NSTYPE` ioctl (Linux 4.11) must say `CLONE_NEWNET`.
pub fn is_netns(path: &Path) -> bool {
    open_netns(path).is_ok()
}

/// Open `path` and check that it is a network namespace.
fn open_netns(path: &Path) -> Result<File, NetnsError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::NotFound {
                path: path.to_path_buf(),
                source,
            }
        } else {
            NetnsError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let fs = fstatfs(&file).map_err(|e| NetnsError::Inspect {
        path: path.to_path_buf(),
        what: "fstatfs",
        source: e.into(),
    })?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(NetnsError::NotNetns {
            path: path.to_path_buf(),
            reason: "not a namespace file (not on nsfs)",
        });
    }
    let kind = ns_type(&file).map_err(|source| NetnsError::Inspect {
        path: path.to_path_buf(),
        what: "NS_GET_NSTYPE",
        source,
    })?;
    if kind != libc::CLONE_NEWNET {
        return Err(NetnsError::NotNetns {
            path: path.to_path_buf(),
            reason: "a namespace of another type",
        });
    }
    Ok(file)
}

fn ns_type(file: &File) -> io::Result<libc::c_int> {
    let fd = file.as_fd();
    // SAFETY: `fd` is an open nsfs file we own (checked with fstatfs just
    // before); NS_GET_NSTYPE takes no argument and returns the CLONE_NEW*
    // type as the result, dereferencing no pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Whether two namespace files (`/var/run/netns/NAME`, `/proc/PID/ns/net`) are the same
/// namespace: the same nsfs inode. False when either cannot be read.
pub fn same_namespace(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn missing_path_is_named_in_the_error() {
        let path = Path::new("/var/run/netns/vsw-no-such-namespace-xyz");
        let err = run_in(path, || ()).unwrap_err();
        assert!(matches!(err, NetnsError::NotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("/var/run/netns/vsw-no-such-namespace-xyz"),
            "{text}"
        );
        assert!(text.contains("netns file"), "{text}");
        assert!(!is_netns(path));
    }

    #[test]
    fn regular_file_is_refused() {
        let path = Path::new("/proc/self/status");
        let err = run_in(path, || ()).unwrap_err();
        assert!(matches!(err, NetnsError::NotNetns { .. }), "{err:?}");
        assert!(err.to_string().contains("/proc/self/status"), "{err}");
        assert!(!is_netns(path));
    }

    #[test]
    fn other_namespace_type_is_refused() {
        let path = Path::new("/proc/self/ns/uts");
        let err = run_in(path, || ()).unwrap_err();
        assert!(
            matches!(err, NetnsError::NotNetns { reason, .. } if reason.contains("another type")),
            "{err:?}"
        );
    }

    #[test]
    fn own_namespace_is_a_netns() {
        assert!(is_netns(Path::new("/proc/self/ns/net")));
    }
}
