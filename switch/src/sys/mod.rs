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

/// Return the heap's free memory to the system (glibc keeps what a large change freed,
/// and the node's memory accounting would count it against the switch). A no-op where
/// the C library is not glibc.
pub fn trim_heap() {
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
