//! Receive packet steering for the switch's TAP interfaces.
//!
//! A frame the switch writes into a TAP is received by the kernel in the writer's own
//! system call: without steering, the worker that forwards a Pod's traffic also runs that
//! Pod's whole receive path (IP, TCP, waking the application) before it can read the next
//! frame. With RPS on the TAP's receive queues the kernel hands that work to the backlog
//! of a CPU chosen by the flow's hash, so it runs beside the worker instead of inside it,
//! as a multi-queue NIC with RSS would have it. Measured on two vCPUs: one TCP stream
//! between two Pods on a node gains 5–17 % (BENCHMARKS.md).
//!
//! `rps_cpus` lives in sysfs, and a sysfs shows the devices of the network namespace it
//! was made in; a Pod's interface is seen only from a sysfs made inside the Pod's
//! namespace. [`steer`] makes one there on a thread of its own, as a *detached* mount
//! (`fsopen`/`fsconfig`/`fsmount`, Linux 5.2): a file descriptor no mount table holds, so
//! no mount namespace is copied or touched, nothing can propagate anywhere, and it is gone
//! when the descriptor closes. The files are opened relative to it.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::netns;

/// The CPUs this process may run on (its affinity, which follows a cpuset or systemd's
/// `CPUAffinity=`): where the switch's interfaces' receive work is steered.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// `cpus` as the kernel's bitmap text (`rps_cpus`): hexadecimal, in comma-separated
/// groups of 32 CPUs, the highest group first ("3" for CPUs 0 and 1, "1,00000000" for
/// CPU 32). An empty list is "0" (steering off).
pub fn cpu_mask(cpus: &[usize]) -> String {
    let Some(&max) = cpus.iter().max() else {
        return "0".into();
    };
    let mut words = vec![0u32; max / 32 + 1];
    for &c in cpus {
        words[c / 32] |= 1 << (c % 32);
    }
    let mut out = String::new();
    for (i, w) in words.iter().rev().enumerate() {
        if i == 0 {
            let _ = write!(out, "{w:x}");
        } else {
            let _ = write!(out, ",{w:08x}");
        }
    }
    out
}

/// Write `mask` (see [`cpu_mask`]) to `rps_cpus` of receive queues `0..queues` of
/// `ifname`, in the network namespace at `netns` (the calling thread's when `None`).
pub fn steer(netns: Option<&Path>, ifname: &str, queues: usize, mask: &str) -> io::Result<()> {
    let ifname = ifname.to_string();
    let mask = mask.to_string();
    let work = move || -> io::Result<()> {
        let sysfs = detached_sysfs()?;
        for q in 0..queues.max(1) {
            let rel = format!("class/net/{ifname}/queues/rx-{q}/rps_cpus");
            let write = || -> io::Result<()> {
                let fd = nix::fcntl::openat(
                    &sysfs,
                    rel.as_str(),
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let mut file = std::fs::File::from(fd);
                file.write_all(mask.as_bytes())
            };
            write().map_err(|e| {
                io::Error::new(e.kind(), format!("write {mask} to /sys/{rel}: {e}"))
            })?;
        }
        Ok(())
    };
    match netns {
        Some(path) => netns::run_in(path, work).map_err(io::Error::other)?,
        None => work(),
    }
}

/// A sysfs of the calling thread's network namespace, mounted nowhere.
fn detached_sysfs() -> io::Result<OwnedFd> {
    // From <linux/mount.h>.
    const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
    const MOUNT_ATTR_NOSUID_NODEV_NOEXEC: libc::c_uint = 0x2 | 0x4 | 0x8;
    let fail = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // SAFETY: fsopen(2) reads the NUL-terminated name and takes flags; it returns a new
    // descriptor or -1, and touches no memory of ours otherwise.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"sysfs".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(fail("fsopen(sysfs)"));
    }
    // SAFETY: `fs` was just returned by fsopen: a descriptor we own and close once.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux (NULL, NULL, 0); `fs` is a
    // valid filesystem context descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(fail("fsconfig(sysfs, CREATE)"));
    }
    // SAFETY: fsmount(2) on the created context, with flags and attributes only; it
    // returns a new descriptor or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID_NODEV_NOEXEC,
        )
    };
    if mnt < 0 {
        return Err(fail("fsmount(sysfs)"));
    }
    // SAFETY: `mnt` was just returned by fsmount: a descriptor we own and close once.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_in_the_kernels_bitmap_format() {
        assert_eq!(cpu_mask(&[]), "0");
        assert_eq!(cpu_mask(&[0]), "1");
        assert_eq!(cpu_mask(&[0, 1]), "3");
        assert_eq!(cpu_mask(&[4, 5, 6, 7]), "f0");
        assert_eq!(cpu_mask(&[31]), "80000000");
        assert_eq!(cpu_mask(&[32]), "1,00000000");
        assert_eq!(cpu_mask(&[0, 33, 70]), "40,00000002,00000001");
    }

    /// Read a mask back the way the kernel's `bitmap_parse` does.
    fn parse(mask: &str) -> Vec<usize> {
        let mut cpus = Vec::new();
        for (i, group) in mask.split(',').rev().enumerate() {
            let w = u32::from_str_radix(group, 16).unwrap();
            cpus.extend((0..32).filter(|b| w & (1 << b) != 0).map(|b| i * 32 + b));
        }
        cpus
    }

    proptest! {
        #[test]
        fn a_mask_names_exactly_its_cpus(mut cpus in proptest::collection::btree_set(0usize..300, 0..40)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())) {
            let mask = cpu_mask(&cpus);
            for g in mask.split(',').skip(1) {
                prop_assert_eq!(g.len(), 8);
            }
            cpus.sort_unstable();
            prop_assert_eq!(parse(&mask), cpus);
        }
    }

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().unwrap().is_empty());
    }
}
