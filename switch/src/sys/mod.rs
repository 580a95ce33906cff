//! The operating-system layer: TAP devices, network namespaces, rtnetlink.
//!
//! This is the only module of the workspace that may use `unsafe`. Every
//! `unsafe` block says which invariant makes it sound (a valid fd we own, a
//! length we checked, a struct the kernel filled).
//!
//! - [`tap`]: raw TAP queues with `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`,
//!   `TUNSETOFFLOAD` and `TUNSETPERSIST`, and the frame read/write calls of
//!   the fast path.
//! - [`netns`]: run a closure on a fresh OS thread that entered a network
//!   namespace. `TUNSETIFF` and netlink sockets act in the namespace of the
//!   calling thread, so re-attaching a Pod's TAP or configuring its addresses
//!   happens inside [`netns::run_in`].
//! - [`netlink`]: a small synchronous rtnetlink client (links, addresses,
//!   routes) with checked acks and dumps.
//! - [`udp`]: the VXLAN tunnel's UDP sockets: batched receive, send with UDP GSO.
//! - [`rps`]: receive packet steering of the TAPs, written through a detached sysfs
//!   made inside the interface's namespace.
//! - [`mapped`]: memory shared with a file, as atomic words (the connection table).
//! - [`trim_heap`]: give the allocator's free memory back to the system after a large
//!   change (a whole cluster's manifest read, compiled and saved).

#![allow(unsafe_code)]

pub mod mapped;
pub mod netlink;
pub mod netns;
pub mod rps;
pub mod tap;
pub mod udp;

#[cfg(test)]
mod tests;

/// The allocator `vswitchd` (and the benchmarks, which measure it) runs with:
/// mimalloc, whose per-thread free lists and segments keep a packet's allocations fast
/// and near each other however large the heap grows. With glibc's allocator a new
/// connection's fast path took 1.2-1.8x as long among 10,000 Services as among 10, for
/// the same traffic and the same instructions (its free lists fragment in a heap that big;
/// see BENCHMARKS.md); with this one 0.9-1.0x.
pub type Allocator = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, v2 and v3 alike: the enum keeps
/// deprecated slots so that the numbers stay).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Settings for [`Allocator`], before the daemon allocates much: memory freed is given
/// back to the system at once instead of after 10 ms (`MIMALLOC_PURGE_DELAY`, when set,
/// wins), so that a burst of large requests on the control socket does not leave the
/// switch holding their memory (the bound `tests/tests/control.rs` checks). Measured
/// no slower on new connections through the fast path.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set takes the option's number and a value, no pointer; it only
    // stores the value in mimalloc's option table.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Return the heap's free memory to the system (an allocator keeps what a large change
/// freed, and the node's memory accounting would count it against the switch): mimalloc's
/// and, for what the C library allocated itself, glibc's.
pub fn trim_heap() {
    // SAFETY: mi_collect takes no pointer; it frees mimalloc's own unused pages and is
    // safe to call from any thread at any time (it only collects the caller's heap and
    // the abandoned ones, with mimalloc's own locking).
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer and only returns free pages of the allocator's
    // own arenas to the kernel; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The longest interface name the kernel takes, without the NUL (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Check an interface name the way the kernel's `dev_valid_name` does.
///
/// Returns why the name is refused: empty, longer than [`IFNAME_MAX`] bytes,
/// `.` or `..`, or containing a NUL, `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an interface name must not be empty");
    }
    if name.len() > IFNAME_MAX {
        return Err("an interface name is at most 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("an interface name must not be \".\" or \"..\"");
    }
    if name.contains('\0') {
        return Err("an interface name must not contain NUL");
    }
    if name.contains('/') {
        return Err("an interface name must not contain '/'");
    }
    if name.contains(':') {
        return Err("an interface name must not contain ':'");
    }
    if name.chars().any(char::is_whitespace) {
        return Err("an interface name must not contain whitespace");
    }
    Ok(())
}
