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
//! `rps_cpus` lives in sysfs, and a sysfs mount shows the devices of the network namespace
//! it was mounted from; a Pod's interface is seen only from a sysfs mounted inside the
//! Pod's namespace. [`steer`] does it on a thread of its own that enters the namespace,
//! takes a private mount namespace (so nothing it mounts is seen by anyone else, and it
//! goes away with the thread) and mounts a fresh sysfs over `/sys` there.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, CpuSet, sched_getaffinity, unshare};
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
/// `ifname`, in the network namespace at `netns` (the switch's own when `None`).
pub fn steer(netns: Option<&Path>, ifname: &str, queues: usize, mask: &str) -> io::Result<()> {
    let ifname = ifname.to_string();
    let mask = mask.to_string();
    let work = move || -> io::Result<()> {
        // A mount namespace for this thread alone: the mounts below are private to it and
        // end with it. `/` is made private first so that nothing propagates back out.
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| with_what(e, "unshare(CLONE_NEWNS)"))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| with_what(e, "make / private"))?;
        match mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ) {
            // EBUSY: `/sys` is this namespace's sysfs already (the kernel refuses to
            // mount a superblock on its own root), as when vswitchd runs under
            // `ip netns exec` or the interface is in the switch's own namespace.
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(with_what(e, "mount sysfs")),
        }
        for q in 0..queues.max(1) {
            let path = format!("/sys/class/net/{ifname}/queues/rx-{q}/rps_cpus");
            std::fs::write(&path, &mask)
                .map_err(|e| io::Error::new(e.kind(), format!("write {mask} to {path}: {e}")))?;
        }
        Ok(())
    };
    match netns {
        Some(path) => netns::run_in(path, work).map_err(io::Error::other)?,
        // Its own thread even in the switch's namespace: the mount namespace must not
        // change under the caller.
        None => std::thread::Builder::new()
            .name("vsw-rps".into())
            .spawn(work)?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the steering thread panicked"))),
    }
}

fn with_what(e: nix::errno::Errno, what: &str) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{what}: {e}"))
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
