//! UDP sockets for the VXLAN tunnel: a batch of datagrams received in one `recvmmsg`,
//! and a run of equal-sized datagrams sent in one `sendmsg` with UDP GSO
//! (`UDP_SEGMENT`, Linux 4.18), falling back to one `sendmsg` each where the kernel
//! refuses it.
//!
//! The sockets are non-blocking IPv4 datagram sockets. The receiving ones share the
//! VXLAN port with `SO_REUSEPORT` (one per worker; the kernel spreads flows over them);
//! the sending ones are bound to the node's address on ports the kernel picks, so that
//! the outer source port (chosen per flow among them) spreads flows over the underlay.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most datagrams one [`UdpSocket::recv_batch`] takes.
pub const MAX_BATCH: usize = 64;

/// Kernel socket buffers asked for (the kernel caps them at `rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 8 << 20;

/// The most segments one UDP GSO send may carry (the kernel's UDP_MAX_SEGMENTS, 64 before
/// Linux 6.4).
const MAX_GSO_SEGMENTS: usize = 64;
/// The most payload one UDP GSO send may carry: one IPv4 datagram's worth.
const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;
/// Whether the kernel has `UDP_SEGMENT` (see [`gso_supported`]).
static GSO_OK: AtomicBool = AtomicBool::new(true);

/// A non-blocking IPv4 UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
}

/// One received datagram: its length and who sent it; with UDP GRO on, the size of each
/// of the datagrams the kernel joined into it (all but the last, which may be shorter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub src: Option<SocketAddrV4>,
    pub segment: Option<u16>,
    /// The datagram, or its control data, did not fit: what arrived is not all of it.
    pub truncated: bool,
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from(*a.ip()).to_be(),
    };
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> Option<SocketAddrV4> {
    (s.sin_family == libc::AF_INET as libc::sa_family_t).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
            u16::from_be(s.sin_port),
        )
    })
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; the option value is an int that lives across the
    // call, and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl UdpSocket {
    /// A socket bound to `addr` (port 0: one the kernel picks). With `reuse_port`, several
    /// sockets may bind the same address and port. Outer packets may be fragmented by the
    /// kernel (`IP_PMTUDISC_DONT`): the switch keeps inner packets within the tunnel's MTU
    /// itself and answers the rest with ICMP.
    pub fn bind(addr: SocketAddrV4, reuse_port: bool) -> io::Result<UdpSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new socket fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if reuse_port {
            setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        // Larger buffers are a help, not a requirement.
        let _ = setsockopt_int(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            SOCKET_BUFFER as i32,
        );
        let _ = setsockopt_int(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            SOCKET_BUFFER as i32,
        );
        setsockopt_int(
            fd.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )?;
        let sa = sockaddr(addr);
        // SAFETY: `sa` is a valid sockaddr_in for the duration of the call and its size
        // is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UdpSocket { fd })
    }

    /// Let the kernel join runs of datagrams of one sender into one receive (`UDP_GRO`,
    /// Linux 5.0); [`RecvMeta::segment`] then tells where to cut. Whether it took it.
    pub fn enable_gro(&self) -> bool {
        setsockopt_int(self.fd.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 1).is_ok()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        // SAFETY: plain data, all-zero is valid.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sa` and `len` are valid for writes and `len` holds `sa`'s size.
        let r = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        from_sockaddr(&sa).ok_or_else(|| io::Error::other("not an IPv4 socket"))
    }

    /// Receive up to `bufs.len()` (at most [`MAX_BATCH`]) datagrams, one into each buffer;
    /// `meta[i]` tells how long datagram `i` is (a longer one is cut to its buffer) and who
    /// sent it. Returns how many; `Err(WouldBlock)` when none waits.
    pub fn recv_batch(&self, bufs: &mut [&mut [u8]], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: plain data; all-zero is a valid value of each.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut addrs: [libc::sockaddr_in; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        // Room for one cmsg carrying an int (UDP_GRO) per message.
        let mut controls = [[0u64; 4]; MAX_BATCH];
        for i in 0..n {
            hdrs[i].msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = size_of::<[u64; 4]>();
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        // SAFETY: `hdrs[..n]` point at `iovs`, `addrs` and `controls`, which outlive the
        // call, and each iovec covers a buffer we hold a unique borrow of; the kernel writes
        // at most `iov_len` bytes into each, `msg_namelen` into each address and
        // `msg_controllen` into each control buffer.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        for i in 0..got {
            meta[i] = RecvMeta {
                len: hdrs[i].msg_len as usize,
                src: from_sockaddr(&addrs[i]),
                segment: gro_segment(&hdrs[i].msg_hdr),
                truncated: hdrs[i].msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0,
            };
        }
        Ok(got)
    }

    /// Send `parts` (joined) to `dst`: one datagram, or with `segment`, a run of datagrams
    /// of `segment` bytes each (the last may be shorter) in as few `sendmsg` calls as UDP
    /// GSO allows. Where the kernel has no GSO (found once, with a probe), or refuses it for
    /// one send (a route MTU below the segments, say), the segments not yet sent go one
    /// `sendmsg` each.
    pub fn send(
        &self,
        dst: SocketAddrV4,
        parts: &[&[u8]],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let Some(seg) = segment.filter(|s| *s > 0 && *s < total) else {
            return self.sendmsg(dst, parts, None);
        };
        let joined;
        let whole: &[u8] = if let [one] = parts {
            one
        } else {
            joined = parts.concat();
            &joined
        };
        let mut done = 0;
        if gso_supported(self) {
            // One send carries at most 64 segments and one IPv4 datagram's worth.
            let per_send = (MAX_GSO_BYTES / seg).clamp(1, MAX_GSO_SEGMENTS) * seg;
            for c in whole.chunks(per_send) {
                let gso = (c.len() > seg).then_some(seg as u16);
                match self.sendmsg(dst, &[c], gso) {
                    Ok(()) => done += c.len(),
                    Err(e) if gso_refused(&e) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        for chunk in whole[done..].chunks(seg) {
            self.sendmsg(dst, &[chunk], None)?;
        }
        Ok(())
    }

    /// Send several datagrams in one `sendmmsg`: datagram `i` is `bytes[msgs[i-1].1 ..
    /// msgs[i].1]` (from `start` for the first) to `msgs[i].0`. Returns how many went, in
    /// order, from the first (all of them unless the kernel stopped at one); `Err` when the
    /// first did not go, with the reason.
    pub fn send_batch(
        &self,
        bytes: &[u8],
        msgs: &[(SocketAddrV4, usize)],
        start: usize,
    ) -> io::Result<usize> {
        let mut sent = 0;
        let mut start = start;
        while sent < msgs.len() {
            let chunk = &msgs[sent..msgs.len().min(sent + MAX_BATCH)];
            // SAFETY: plain data; all-zero is a valid value of each.
            let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
            // SAFETY: as above.
            let mut addrs: [libc::sockaddr_in; MAX_BATCH] = unsafe { zeroed() };
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
            let mut from = start;
            for (i, (dst, end)) in chunk.iter().enumerate() {
                let part = bytes.get(from..*end).unwrap_or_default();
                iovs[i] = libc::iovec {
                    iov_base: part.as_ptr().cast_mut().cast(),
                    iov_len: part.len(),
                };
                addrs[i] = sockaddr(*dst);
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
                hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                from = *end;
            }
            // SAFETY: `hdrs[..chunk.len()]` point at `iovs` and `addrs`, which outlive the
            // call; each iovec covers part of `bytes`, which the kernel only reads.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                return if sent == 0 { Err(e) } else { Ok(sent) };
            }
            let r = r as usize;
            start = chunk[r - 1].1;
            sent += r;
            if r < chunk.len() {
                break;
            }
        }
        Ok(sent)
    }

    fn sendmsg(&self, dst: SocketAddrV4, parts: &[&[u8]], gso: Option<u16>) -> io::Result<()> {
        const MAX_PARTS: usize = 4;
        if parts.len() > MAX_PARTS {
            return self.sendmsg(dst, &[&parts.concat()], gso);
        }
        // SAFETY: plain data; all-zero is valid.
        let mut iovs: [libc::iovec; MAX_PARTS] = unsafe { zeroed() };
        for (iov, p) in iovs.iter_mut().zip(parts) {
            *iov = libc::iovec {
                iov_base: p.as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            };
        }
        let mut sa = sockaddr(dst);
        // Room for one cmsg carrying a u16 (CMSG_SPACE(2) is 16 or 24 bytes).
        let mut control = [0u64; 4];
        // SAFETY: plain data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut sa as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = parts.len();
        if let Some(size) = gso {
            // SAFETY: CMSG_SPACE is a pure size computation.
            let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            debug_assert!(space <= size_of::<[u64; 4]>());
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            // SAFETY: `msg` points at `control`, which is aligned for cmsghdr, zeroed and
            // at least CMSG_SPACE(2) long, so CMSG_FIRSTHDR is non-null and the header and
            // its u16 payload fit in it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
            }
        }
        // SAFETY: `msg` points at the iovecs, the address and the control buffer, all of
        // which live across the call; the iovecs cover borrowed slices the kernel only reads.
        let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Errors that mean "this kernel or path does not do UDP GSO".
/// The UDP_GRO segment size in a received message's control data, if the kernel put one.
fn gro_segment(msg: &libc::msghdr) -> Option<u16> {
    // SAFETY: `msg` is a message the kernel filled: its control pointer and the length it
    // set describe a valid, aligned control buffer of ours, which CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk without leaving it; each header's data is read only when its
    // length holds an int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == libc::UDP_GRO
                && (*c).cmsg_len >= libc::CMSG_LEN(size_of::<i32>() as u32) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
                return u16::try_from(v).ok().filter(|s| *s > 0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// Errors with which the kernel refuses a GSO send that it would take segment by segment
/// (a segment plus headers over the route's MTU gives EINVAL).
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EIO)
    )
}

/// Whether the kernel has UDP GSO (`UDP_SEGMENT`, Linux 4.18): probed once, with the
/// socket option of that name, on the first socket that asks.
fn gso_supported(sock: &UdpSocket) -> bool {
    static PROBED: std::sync::Once = std::sync::Once::new();
    PROBED.call_once(|| {
        let ok = setsockopt_int(sock.fd.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
        if !ok {
            tracing::info!("no UDP GSO here: VXLAN datagrams go one by one");
        }
        GSO_OK.store(ok, Ordering::Relaxed);
    });
    GSO_OK.load(Ordering::Relaxed)
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    fn recv_all(rx: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < want && std::time::Instant::now() < deadline {
            let mut store = vec![vec![0u8; 2048]; 8];
            let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut meta = [RecvMeta::default(); 8];
            match rx.recv_batch(&mut bufs, &mut meta) {
                Ok(n) => {
                    for (b, m) in bufs.iter().zip(&meta).take(n) {
                        assert_eq!(m.src.map(|s| *s.ip()), Some(Ipv4Addr::LOCALHOST));
                        got.push(b[..m.len].to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn batches_and_segments_arrive_as_datagrams() {
        let rx = UdpSocket::bind(lo(0), true).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(lo(0), false).unwrap();
        tx.send(to, &[b"ab", b"cd"], None).unwrap();
        // 2500 bytes in 1000-byte datagrams: 1000, 1000, 500.
        let run: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        tx.send(to, &[&run[..10], &run[10..]], Some(1000)).unwrap();
        let got = recv_all(&rx, 4);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"abcd");
        assert_eq!(got[1], run[..1000]);
        assert_eq!(got[2], run[1000..2000]);
        assert_eq!(got[3], run[2000..]);
    }

    #[test]
    fn a_run_longer_than_one_gso_send_goes_in_several() {
        let rx = UdpSocket::bind(lo(0), true).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(lo(0), false).unwrap();
        // A 64 KB TSO frame after VXLAN encapsulation: 47 segments of 1458 bytes, more
        // than one IPv4 datagram's worth; and 100 small ones, more than 64 segments.
        let run: Vec<u8> = (0..47 * 1458u32).map(|i| (i / 1458) as u8).collect();
        tx.send(to, &[&run], Some(1458)).unwrap();
        let got = recv_all(&rx, 47);
        assert_eq!(got.len(), 47);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, d)| d.len() == 1458 && d[0] == i as u8)
        );
        let small = vec![7u8; 100 * 100];
        tx.send(to, &[&small], Some(100)).unwrap();
        assert_eq!(recv_all(&rx, 100).len(), 100);
    }

    #[test]
    fn a_batch_goes_in_one_call() {
        let rx = UdpSocket::bind(lo(0), true).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind(lo(0), false).unwrap();
        let bytes: Vec<u8> = (0..100u8).collect();
        let msgs: Vec<(SocketAddrV4, usize)> = (1..=10).map(|i| (to, i * 10)).collect();
        assert_eq!(tx.send_batch(&bytes, &msgs, 0).unwrap(), 10);
        let got = recv_all(&rx, 10);
        assert_eq!(got.len(), 10);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d[..], bytes[i * 10..i * 10 + 10]);
        }
    }

    #[test]
    fn reuse_port_lets_workers_share_the_vxlan_port() {
        let a = UdpSocket::bind(lo(0), true).unwrap();
        let port = a.local_addr().unwrap().port();
        let b = UdpSocket::bind(lo(port), true).unwrap();
        assert_eq!(b.local_addr().unwrap().port(), port);
        assert!(UdpSocket::bind(lo(port), false).is_err());
        let mut buf = [0u8; 16];
        let mut bufs: Vec<&mut [u8]> = vec![&mut buf];
        let mut meta = [RecvMeta::default(); 1];
        let e = a.recv_batch(&mut bufs, &mut meta).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
