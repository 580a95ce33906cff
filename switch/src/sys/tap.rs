//! Raw TAP devices: L2 frames with a virtio-net header, one fd per queue.
//!
//! A [`Tap`] is always opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, and
//! with `IFF_MULTI_QUEUE` whenever the kernel has it (even for one queue), so
//! that a restarted switch with a different number of workers can re-attach
//! with as many queues as it likes. Each queue is its own open of
//! `/dev/net/tun` followed by `TUNSETIFF` with the same name.
//!
//! `TUNSETIFF` resolves the name in the network namespace of the calling
//! thread. To open or re-attach the TAP of a Pod, call [`Tap::open`] or
//! [`Tap::attach`] inside [`super::netns::run_in`]; the fds work from any
//! thread afterwards.
//!
//! A non-persistent TAP disappears when its last fd closes, so the switch sets
//! `TUNSETPERSIST` on Pod TAPs and re-attaches them after a restart.

use std::ffi::c_ulong;
use std::fs::OpenOptions;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;

/// The length of `struct virtio_net_hdr_v1`, the header before every frame
/// (`TUNSETVNETHDRSZ` is set to this on every queue).
pub const VNET_HDR_LEN: usize = 12;

/// The most queues one TAP can have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

const TUN_PATH: &str = "/dev/net/tun";

/// A TAP operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name would be refused by the kernel (or silently mean another device).
    #[error("invalid TAP name {name:?}: {reason}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The queue count is 0 or more than [`MAX_QUEUES`].
    #[error("invalid queue count {queues} for TAP {name:?}: must be 1..={MAX_QUEUES}")]
    InvalidQueues {
        /// The TAP name.
        name: String,
        /// The count asked for.
        queues: usize,
    },
    /// More than one queue was asked for, but the kernel has no `IFF_MULTI_QUEUE`.
    #[error("TAP {name:?}: {queues} queues asked for but the kernel has no IFF_MULTI_QUEUE")]
    NoMultiQueue {
        /// The TAP name.
        name: String,
        /// The count asked for.
        queues: usize,
    },
    /// `open("/dev/net/tun")` failed.
    #[error("open {TUN_PATH} for TAP {name:?}: {source}")]
    OpenTun {
        /// The TAP name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNGETFEATURES` failed.
    #[error("TUNGETFEATURES on {TUN_PATH}: {source}")]
    GetFeatures {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNSETIFF` failed for one queue.
    #[error("TUNSETIFF for queue {queue} of TAP {name:?}: {source}{hint}")]
    SetIff {
        /// The TAP name.
        name: String,
        /// The queue being opened.
        queue: usize,
        /// What the errno usually means here (may be empty).
        hint: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNGETIFF` failed.
    #[error("TUNGETIFF on TAP {name:?}: {source}")]
    GetIff {
        /// The TAP name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNSETVNETHDRSZ` failed for one queue.
    #[error("TUNSETVNETHDRSZ {VNET_HDR_LEN} on queue {queue} of TAP {name:?}: {source}")]
    SetVnetHdrSz {
        /// The TAP name.
        name: String,
        /// The queue.
        queue: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNSETOFFLOAD` failed (after falling back as far as no offloads).
    #[error("TUNSETOFFLOAD {flags:#x} on TAP {name:?}: {source}")]
    SetOffload {
        /// The TAP name.
        name: String,
        /// The `TUN_F_*` flags of the last attempt.
        flags: libc::c_uint,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNSETPERSIST` failed.
    #[error("TUNSETPERSIST {on} on TAP {name:?}: {source}")]
    SetPersist {
        /// The TAP name.
        name: String,
        /// The value being set.
        on: bool,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `attach` found no interface of that name in the thread's namespace.
    #[error(
        "attach to TAP {name:?}: no interface of that name in this network namespace \
         (refusing to create a new one)"
    )]
    NotFound {
        /// The TAP name.
        name: String,
    },
    /// `if_nametoindex` failed with something other than "no such device".
    #[error("look up interface {name:?}: {source}")]
    Lookup {
        /// The interface name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `attach` found the device, but it was replaced while attaching: the
    /// queues opened belong to a new device, which is closed again.
    #[error(
        "attach to TAP {name:?}: the interface (ifindex {before}) went away while attaching \
         (now ifindex {after:?}); the new device was not kept"
    )]
    Replaced {
        /// The TAP name.
        name: String,
        /// The index seen before attaching.
        before: u32,
        /// The index seen after, if any.
        after: Option<u32>,
    },
}

/// What the kernel agreed to hand us / take from us on a TAP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Partial checksums (`TUN_F_CSUM`): frames may carry `NEEDS_CSUM`.
    pub csum: bool,
    /// TCP segmentation offload over IPv4 (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP segmentation offload over IPv6 (`TUN_F_TSO6`).
    pub tso6: bool,
    /// UDP segmentation offload over IPv4 and IPv6 (`TUN_F_USO4 | TUN_F_USO6`).
    pub uso: bool,
}

impl Offloads {
    /// Checksum offload and TSO for both IP versions; no USO.
    pub const CSUM_TSO: Offloads = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        uso: false,
    };
    /// Everything this switch can take.
    pub const ALL: Offloads = Offloads {
        uso: true,
        ..Offloads::CSUM_TSO
    };

    /// The enabled offloads as a comma-separated list, e.g. `"csum,tso4,tso6,uso"`,
    /// or `""` when none.
    pub fn names(&self) -> String {
        let all = [
            (self.csum, "csum"),
            (self.tso4, "tso4"),
            (self.tso6, "tso6"),
            (self.uso, "uso"),
        ];
        let on: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        on.join(",")
    }

    /// The `TUNSETOFFLOAD` argument for these offloads.
    ///
    /// Segmentation offloads need checksum offload (the kernel refuses TSO or
    /// USO bits without `TUN_F_CSUM`), so without `csum` this is 0.
    pub fn tun_flags(&self) -> libc::c_uint {
        if !self.csum {
            return 0;
        }
        let mut flags = libc::TUN_F_CSUM;
        if self.tso4 {
            flags |= libc::TUN_F_TSO4;
        }
        if self.tso6 {
            flags |= libc::TUN_F_TSO6;
        }
        if self.uso {
            flags |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
        }
        flags
    }
}

/// How to open a TAP.
#[derive(Clone, Debug)]
pub struct TapConfig {
    /// The interface name: 1 to 15 bytes, no NUL, `/`, `:` or whitespace.
    pub name: String,
    /// The number of queues (one fd each), 1 to [`MAX_QUEUES`].
    pub queues: usize,
    /// Ask for checksum offload and TSO4/TSO6, plus USO4/USO6 when the kernel
    /// takes them. What was agreed is in [`Tap::offloads`].
    pub offloads: bool,
    /// Set `TUNSETPERSIST` so that the device outlives our fds.
    pub persist: bool,
}

impl TapConfig {
    /// One queue, offloads on, not persistent.
    pub fn new(name: impl Into<String>) -> TapConfig {
        TapConfig {
            name: name.into(),
            queues: 1,
            offloads: true,
            persist: false,
        }
    }

    fn validate(&self) -> Result<(), TapError> {
        super::validate_ifname(&self.name).map_err(|reason| TapError::InvalidName {
            name: self.name.clone(),
            reason,
        })?;
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(TapError::InvalidQueues {
                name: self.name.clone(),
                queues: self.queues,
            });
        }
        Ok(())
    }
}

/// An open TAP device: one non-blocking fd per queue.
///
/// Dropping it closes the fds; a TAP without `persist` then disappears.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<OwnedFd>,
    offloads: Offloads,
}

impl Tap {
    /// Create (or attach to, if it exists) the TAP `cfg.name` in the calling
    /// thread's network namespace.
    ///
    /// Uses `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, plus `IFF_MULTI_QUEUE` when
    /// the kernel has it. Each queue is opened `O_RDWR | O_NONBLOCK |
    /// O_CLOEXEC` with `TUNSETVNETHDRSZ` 12; `TUNSETOFFLOAD` is set once and
    /// `TUNSETPERSIST` if asked. An existing device of that name must be a
    /// TAP opened the same way (multi-queue), or `TUNSETIFF` fails.
    pub fn open(cfg: &TapConfig) -> Result<Tap, TapError> {
        cfg.validate()?;
        Tap::open_validated(cfg, false)
    }

    /// Like [`Tap::open`], but only ever a new device: the first queue asks for
    /// `IFF_TUN_EXCL`, so the kernel refuses (`EBUSY`) if an interface of that
    /// name already exists, atomically with the creation.
    pub fn create(cfg: &TapConfig) -> Result<Tap, TapError> {
        cfg.validate()?;
        Tap::open_validated(cfg, true)
    }

    /// Like [`Tap::open`], but fails with [`TapError::NotFound`] if no
    /// interface of that name exists in this namespace: re-attaching after a
    /// restart must not silently create a new device.
    pub fn attach(cfg: &TapConfig) -> Result<Tap, TapError> {
        cfg.validate()?;
        let before = ifindex(&cfg.name)?.ok_or_else(|| TapError::NotFound {
            name: cfg.name.clone(),
        })?;
        let tap = Tap::open_validated(cfg, false)?;
        // TUNSETIFF creates the device if it vanished between the lookup and
        // the ioctl; a different index tells. Dropping `tap` then removes the
        // new device unless it was made persistent, which is undone first.
        let after = ifindex(&cfg.name)?;
        if after != Some(before) {
            if cfg.persist {
                let _ = tap.set_persist(false);
            }
            return Err(TapError::Replaced {
                name: cfg.name.clone(),
                before,
                after,
            });
        }
        Ok(tap)
    }

    fn open_validated(cfg: &TapConfig, exclusive: bool) -> Result<Tap, TapError> {
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        let first = open_tun(&cfg.name)?;
        let features = tun_features(first.as_fd())?;
        if features & libc::IFF_MULTI_QUEUE as libc::c_uint != 0 {
            flags |= libc::IFF_MULTI_QUEUE;
        } else if cfg.queues > 1 {
            return Err(TapError::NoMultiQueue {
                name: cfg.name.clone(),
                queues: cfg.queues,
            });
        }

        let mut queues = Vec::with_capacity(cfg.queues);
        let mut next = Some(first);
        for queue in 0..cfg.queues {
            let fd = match next.take() {
                Some(fd) => fd,
                None => open_tun(&cfg.name)?,
            };
            let excl = if exclusive && queue == 0 {
                libc::IFF_TUN_EXCL
            } else {
                0
            };
            set_iff(fd.as_fd(), &cfg.name, flags | excl).map_err(|source| TapError::SetIff {
                name: cfg.name.clone(),
                queue,
                hint: set_iff_hint(&source),
                source,
            })?;
            let hdr_len = VNET_HDR_LEN as libc::c_int;
            ioctl_set_int(fd.as_fd(), libc::TUNSETVNETHDRSZ, hdr_len).map_err(|source| {
                TapError::SetVnetHdrSz {
                    name: cfg.name.clone(),
                    queue,
                    source,
                }
            })?;
            queues.push(fd);
        }

        // The kernel may have changed the name (e.g. a "%d" pattern, refused
        // by validation today); read back what it uses.
        let name = get_iff_name(queues[0].as_fd()).map_err(|source| TapError::GetIff {
            name: cfg.name.clone(),
            source,
        })?;
        let offloads = set_offloads(queues[0].as_fd(), &name, cfg.offloads)?;
        let tap = Tap {
            name,
            queues,
            offloads,
        };
        if cfg.persist {
            tap.set_persist(true)?;
        }
        tracing::debug!(
            tap = %tap.name,
            queues = tap.queues.len(),
            offloads = %tap.offloads.names(),
            persist = cfg.persist,
            "TAP open"
        );
        Ok(tap)
    }

    /// The interface name, as the kernel reported it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The fd of queue `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.queues()`.
    pub fn queue(&self, i: usize) -> BorrowedFd<'_> {
        self.queues[i].as_fd()
    }

    /// Move the queue fds out (to hand them to worker threads).
    ///
    /// The device stays as long as one of them is open (or it is persistent).
    pub fn into_queues(self) -> Vec<OwnedFd> {
        self.queues
    }

    /// The offloads the kernel agreed to.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Set or clear `TUNSETPERSIST`.
    pub fn set_persist(&self, on: bool) -> Result<(), TapError> {
        ioctl_set_value(
            self.queues[0].as_fd(),
            libc::TUNSETPERSIST,
            c_ulong::from(on),
        )
        .map_err(|source| TapError::SetPersist {
            name: self.name.clone(),
            on,
            source,
        })
    }
}

/// Delete a persistent TAP: clear `TUNSETPERSIST` and close all its queues.
///
/// The device goes away once no process holds a queue of it. The fds are
/// closed even if clearing the flag fails.
pub fn destroy(tap: Tap) -> Result<(), TapError> {
    let result = tap.set_persist(false);
    drop(tap);
    result
}

/// Read one frame (virtio-net header first) from a non-blocking queue fd
/// into `buf`; `Err(WouldBlock)` when the queue is empty.
///
/// `buf` must hold the largest frame the TAP can send: with TSO on, up to
/// 64 KiB plus the Ethernet and vnet headers. The kernel cuts a longer frame
/// to `buf.len()` without saying so (the rest is lost), so a read that fills
/// `buf` exactly may have been truncated.
pub fn read_frame(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write one frame: `hdr` then `frame`, in one `writev`; returns the bytes
/// written (header included). `Err(WouldBlock)` if the queue is full.
pub fn write_frame(
    fd: BorrowedFd<'_>,
    hdr: &[u8; VNET_HDR_LEN],
    frame: &[u8],
) -> io::Result<usize> {
    let iov = [IoSlice::new(hdr), IoSlice::new(frame)];
    loop {
        match nix::sys::uio::writev(fd, &iov) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn open_tun(name: &str) -> Result<OwnedFd, TapError> {
    // std adds O_CLOEXEC on its own; it is spelled out to match the contract.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map(OwnedFd::from)
        .map_err(|source| TapError::OpenTun {
            name: name.to_owned(),
            source,
        })
}

/// The interface index of `name` in this thread's namespace, `None` if absent.
fn ifindex(name: &str) -> Result<Option<u32>, TapError> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(i) => Ok(Some(i)),
        Err(Errno::ENODEV) => Ok(None),
        Err(e) => Err(TapError::Lookup {
            name: name.to_owned(),
            source: e.into(),
        }),
    }
}

fn set_iff_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EINVAL) => {
            " (an existing interface of that name is not a TAP, or was created without \
             IFF_MULTI_QUEUE)"
        }
        Some(libc::EBUSY) => {
            " (an interface of that name already exists, or the device is single-queue and \
             already attached elsewhere)"
        }
        Some(libc::EPERM) => " (needs CAP_NET_ADMIN, or the TAP's owner/group)",
        _ => "",
    }
}

fn zeroed_ifreq() -> libc::ifreq {
    // SAFETY: `ifreq` is a C struct of a char array and a union of integers,
    // socket addresses and raw pointers; the all-zero bit pattern is a valid
    // value of each of them (null pointers are never dereferenced here).
    unsafe { std::mem::zeroed() }
}

fn tun_features(fd: BorrowedFd<'_>) -> Result<libc::c_uint, TapError> {
    let mut features: libc::c_uint = 0;
    // SAFETY: `fd` is an open /dev/net/tun fd we own; TUNGETFEATURES writes
    // one `unsigned int` through the pointer, which points to a live
    // `c_uint` on our stack.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut features) };
    if rc < 0 {
        return Err(TapError::GetFeatures {
            source: io::Error::last_os_error(),
        });
    }
    Ok(features)
}

fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<()> {
    let mut ifr = zeroed_ifreq();
    // The name was validated to at most IFNAMSIZ-1 bytes, so the zeroed last
    // byte stays as the terminating NUL.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // The TUNSETIFF flags are all below 0x10000 and fit the short field.
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: `fd` is an open /dev/net/tun fd we own; TUNSETIFF reads and
    // writes one `struct ifreq` through the pointer, which points to a live,
    // fully initialised `ifreq` whose name is NUL-terminated.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_iff_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    let mut ifr = zeroed_ifreq();
    // SAFETY: `fd` is an attached TAP fd we own; TUNGETIFF writes one
    // `struct ifreq` through the pointer, which points to a live `ifreq`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An ioctl whose argument is a pointer to an `int` the kernel reads.
fn ioctl_set_int(fd: BorrowedFd<'_>, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open TAP fd we own; the request is one that reads
    // one `int` through the pointer, which points to a live `c_int`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An ioctl whose argument is passed by value (`TUNSETOFFLOAD`, `TUNSETPERSIST`).
fn ioctl_set_value(fd: BorrowedFd<'_>, request: libc::Ioctl, value: c_ulong) -> io::Result<()> {
    // SAFETY: `fd` is an open TAP fd we own; the request takes its argument
    // by value and dereferences no pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set the offloads: everything, then without USO, then checksum only, then
/// none, stepping down only while the kernel says EINVAL (unknown flags).
fn set_offloads(fd: BorrowedFd<'_>, name: &str, want: bool) -> Result<Offloads, TapError> {
    let ladder: &[Offloads] = if want {
        &[
            Offloads::ALL,
            Offloads::CSUM_TSO,
            Offloads {
                csum: true,
                ..Offloads::default()
            },
            Offloads::default(),
        ]
    } else {
        &[Offloads::default()]
    };
    let mut last = None;
    for offloads in ladder {
        let flags = offloads.tun_flags();
        match ioctl_set_value(fd, libc::TUNSETOFFLOAD, c_ulong::from(flags)) {
            Ok(()) => return Ok(*offloads),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(tap = name, flags, "TUNSETOFFLOAD refused, falling back");
                last = Some((flags, e));
            }
            Err(source) => {
                return Err(TapError::SetOffload {
                    name: name.to_owned(),
                    flags,
                    source,
                });
            }
        }
    }
    let (flags, source) = last.unwrap_or((0, io::Error::from_raw_os_error(libc::EINVAL)));
    Err(TapError::SetOffload {
        name: name.to_owned(),
        flags,
        source,
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn tun_flags_maps_each_offload() {
        assert_eq!(Offloads::default().tun_flags(), 0);
        assert_eq!(
            Offloads {
                csum: true,
                ..Offloads::default()
            }
            .tun_flags(),
            libc::TUN_F_CSUM
        );
        assert_eq!(
            Offloads::CSUM_TSO.tun_flags(),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
        assert_eq!(Offloads::ALL.tun_flags(), 0x01 | 0x02 | 0x04 | 0x20 | 0x40);
        let tso6_only = Offloads {
            csum: true,
            tso6: true,
            ..Offloads::default()
        };
        assert_eq!(tso6_only.tun_flags(), libc::TUN_F_CSUM | libc::TUN_F_TSO6);
    }

    #[test]
    fn segmentation_without_checksum_offload_is_nothing() {
        let no_csum = Offloads {
            csum: false,
            ..Offloads::ALL
        };
        assert_eq!(no_csum.tun_flags(), 0);
    }

    #[test]
    fn names_lists_enabled_offloads() {
        assert_eq!(Offloads::ALL.names(), "csum,tso4,tso6,uso");
        assert_eq!(Offloads::CSUM_TSO.names(), "csum,tso4,tso6");
        assert_eq!(Offloads::default().names(), "");
    }

    fn config_error(name: &str, queues: usize) -> Option<TapError> {
        let cfg = TapConfig {
            queues,
            ..TapConfig::new(name)
        };
        cfg.validate().err()
    }

    #[test]
    fn config_validation_refuses_bad_names() {
        for bad in [
            "",
            "a23456789012345x",
            "a\0b",
            "a/b",
            "a:b",
            "a b",
            ".",
            "..",
        ] {
            match config_error(bad, 1) {
                Some(TapError::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
        }
        assert!(
            config_error("a23456789012345", 1).is_none(),
            "15 bytes is fine"
        );
        assert!(config_error("eth0", 1).is_none());
        // 15 characters but more than 15 bytes.
        assert!(matches!(
            config_error("ééééééééé", 1),
            Some(TapError::InvalidName { .. })
        ));
    }

    #[test]
    fn config_validation_refuses_bad_queue_counts() {
        assert!(matches!(
            config_error("eth0", 0),
            Some(TapError::InvalidQueues { queues: 0, .. })
        ));
        assert!(matches!(
            config_error("eth0", MAX_QUEUES + 1),
            Some(TapError::InvalidQueues { .. })
        ));
        assert!(config_error("eth0", MAX_QUEUES).is_none());
    }

    #[test]
    fn error_names_the_operation() {
        let e = TapError::SetIff {
            name: "eth0".into(),
            queue: 1,
            hint: set_iff_hint(&io::Error::from_raw_os_error(libc::EBUSY)),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("TUNSETIFF for queue 1 of TAP \"eth0\": "),
            "{text}"
        );
        assert!(text.contains("single-queue"), "{text}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
