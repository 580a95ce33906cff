//! Memory shared with a file (or with nothing), seen as an array of atomic 64-bit words.
//!
//! The connection tracker keeps its table here so that it outlives the process: a file in
//! the run directory mapped `MAP_SHARED` keeps every store the process made, even after a
//! `kill -9`, because the pages belong to the page cache (tmpfs), not to the process. The
//! table holds no pointers, only words, and is read back word by word, so a damaged or
//! foreign file can give wrong values but never undefined behaviour.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// `len` atomic words backed by a shared file mapping or anonymous memory.
pub struct MappedWords {
    ptr: *mut AtomicU64,
    len: usize,
    _file: Option<nix::fcntl::Flock<File>>,
}

// SAFETY: the mapping is only reached through `&[AtomicU64]`, whose accesses are atomic,
// so sharing it between threads is as sound as sharing a slice of atomics.
unsafe impl Send for MappedWords {}
// SAFETY: as above.
unsafe impl Sync for MappedWords {}

impl std::fmt::Debug for MappedWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedWords")
            .field("len", &self.len)
            .field("file", &self._file)
            .finish()
    }
}

impl MappedWords {
    /// Map `len` words of the file at `path`, creating it (mode 0600) or growing it to
    /// that size. Returns whether the file existed with at least that size before. The
    /// file is locked (`flock`, exclusive) while mapped: a second process is refused.
    pub fn open(path: &Path, len: usize) -> io::Result<(MappedWords, bool)> {
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| io::Error::other("mapping too large"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another process ({e})", path.display()),
                )
            })?;
        let had = file.metadata()?.len() >= bytes as u64;
        if file.metadata()?.len() != bytes as u64 {
            file.set_len(bytes as u64)?;
        }
        let ptr = map(Some(&file), bytes)?;
        Ok((
            MappedWords {
                ptr,
                len,
                _file: Some(file),
            },
            had,
        ))
    }

    /// `len` zeroed words of anonymous memory (pages are given on first touch).
    pub fn anonymous(len: usize) -> io::Result<MappedWords> {
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| io::Error::other("mapping too large"))?;
        let ptr = map(None, bytes)?;
        Ok(MappedWords {
            ptr,
            len,
            _file: None,
        })
    }

    pub fn words(&self) -> &[AtomicU64] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is a live mapping of `len * 8` bytes, readable and writable,
        // page-aligned (so aligned for AtomicU64), kept until drop; AtomicU64 has the
        // layout of u64 and every bit pattern is a valid value; all access goes through
        // atomics, so concurrent use by threads (or by another mapping of the file) is
        // not a data race.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn map(file: Option<&File>, bytes: usize) -> io::Result<*mut AtomicU64> {
    if bytes == 0 {
        return Ok(std::ptr::NonNull::dangling().as_ptr());
    }
    let (flags, fd) = match file {
        Some(f) => (libc::MAP_SHARED, f.as_raw_fd()),
        None => (
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        ),
    };
    // SAFETY: a fresh mapping at an address the kernel chooses; `fd` is open for reading
    // and writing and at least `bytes` long (set_len above) or -1 for anonymous memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `map`; no reference into it
            // outlives `self` (`words` borrows `self`).
            unsafe {
                libc::munmap(self.ptr.cast(), self.len * 8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn words_survive_a_remap() {
        let dir = std::env::temp_dir().join(format!("vsw-mapped-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        {
            let (m, had) = MappedWords::open(&dir, 1024).unwrap();
            assert!(!had);
            m.words()[1000].store(0xdead_beef, Ordering::Relaxed);
        }
        let (m, had) = MappedWords::open(&dir, 1024).unwrap();
        assert!(had);
        assert_eq!(m.words()[1000].load(Ordering::Relaxed), 0xdead_beef);
        std::fs::remove_file(&dir).unwrap();
        let a = MappedWords::anonymous(1 << 20).unwrap();
        assert_eq!(a.words()[12345].load(Ordering::Relaxed), 0);
    }
}
