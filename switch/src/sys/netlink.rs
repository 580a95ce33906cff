//! A small synchronous rtnetlink client: links, addresses, routes.
//!
//! Built on `netlink-sys` (a blocking socket) and `netlink-packet-route`
//! (message types); no async runtime. A netlink socket belongs to the network
//! namespace of the thread that opens it, so to configure a Pod, open
//! [`Rtnl`] inside [`super::netns::run_in`].
//!
//! Every request asks for an ack (`NLM_F_ACK`) or is a dump (`NLM_F_DUMP`,
//! read until `NLMSG_DONE`); replies are matched by sequence number, and a
//! kernel error is reported with the request that caused it, e.g.
//! `RTM_NEWADDR 10.0.0.2/24 on ifindex 7: File exists (os error 17)`, plus
//! the kernel's extended-ack message when it gave one.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// How long to wait for the kernel's answer before giving up.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// The extended-ack attribute holding the kernel's error text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The size of `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;

/// A netlink operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening, binding or configuring the socket failed.
    #[error("{what} on a NETLINK_ROUTE socket: {source}")]
    Open {
        /// Which call.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `send` of the request failed.
    #[error("send {request}: {source}")]
    Send {
        /// The request.
        request: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `recv` of the answer failed (`EAGAIN` here means the kernel did not
    /// answer within the timeout).
    #[error("receive the answer to {request}: {source}")]
    Recv {
        /// The request.
        request: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the request.
    #[error("{request}: {source}{}", fmt_detail(.detail))]
    Kernel {
        /// The request.
        request: String,
        /// The kernel's extended-ack message, if it gave one.
        detail: Option<String>,
        /// The errno the kernel answered with.
        #[source]
        source: io::Error,
    },
    /// An answer could not be parsed.
    #[error("parse the answer to {request}: {source}")]
    Decode {
        /// The request.
        request: String,
        /// What the parser said.
        #[source]
        source: DecodeError,
    },
    /// The answer broke the protocol (overrun, short send, ...).
    #[error("{request}: {what}")]
    Protocol {
        /// The request.
        request: String,
        /// What went wrong.
        what: &'static str,
    },
    /// The dump changed while it was read (`NLM_F_DUMP_INTR`), three times in a row.
    #[error("{request}: the dump kept changing while it was read (NLM_F_DUMP_INTR)")]
    DumpInterrupted {
        /// The request.
        request: String,
    },
    /// An interface name the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A prefix length longer than the address.
    #[error("invalid prefix length {prefix} for {addr}")]
    InvalidPrefix {
        /// The address.
        addr: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// The destination and gateway of a route are of different IP versions.
    #[error("route to {dst} via {gateway}: destination and gateway differ in IP version")]
    MixedFamilies {
        /// The destination.
        dst: IpAddr,
        /// The gateway.
        gateway: IpAddr,
    },
}

fn fmt_detail(detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn kernel_errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The MAC address (all zero if the link has none of 6 bytes).
    pub mac: [u8; 6],
    /// The MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// A unicast route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The destination prefix; `None` for the default route.
    pub dst: Option<(IpAddr, u8)>,
    /// The next hop, if any.
    pub gateway: Option<IpAddr>,
    /// The output interface index, if any.
    pub oif: Option<u32>,
}

/// A synchronous rtnetlink socket in the namespace of the thread that opened it.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rtnl")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// What a request waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `NLM_F_ACK`: replies until the ack.
    Ack,
    /// `NLM_F_DUMP`: replies until `NLMSG_DONE`.
    Dump,
}

impl Rtnl {
    /// Open a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl, NetlinkError> {
        let open = |what| move |source| NetlinkError::Open { what, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(open("socket"))?;
        socket.bind_auto().map_err(open("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(open("connect"))?;
        // Both are optional niceties (Linux 4.2/4.12): the kernel's error text,
        // and acks that do not echo the whole request back.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| NetlinkError::Open {
                what: "setsockopt(SO_RCVTIMEO)",
                source: e.into(),
            })?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// The index of the link called `name`, `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let request = format!("RTM_GETLINK name {name:?}");
        match self.request(&request, RouteNetlinkMessage::GetLink(msg), 0, Kind::Ack) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.kernel_errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link with index `index`, `None` if there is none.
    pub fn link(&mut self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let request = format!("RTM_GETLINK ifindex {index}");
        match self.request(&request, RouteNetlinkMessage::GetLink(msg), 0, Kind::Ack) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_info(&l)),
                _ => None,
            })),
            Err(e) if e.kernel_errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set the link administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_flag_up(index, true)
    }

    /// Set the link administratively down (needed before a rename).
    pub fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.set_flag_up(index, false)
    }

    fn set_flag_up(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        let request = format!(
            "RTM_SETLINK {} on ifindex {index}",
            if up { "up" } else { "down" }
        );
        self.request(&request, RouteNetlinkMessage::SetLink(msg), 0, Kind::Ack)
            .map(drop)
    }

    /// Set the link's MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let request = format!("RTM_SETLINK address {} on ifindex {index}", MacText(mac));
        self.set_link_attribute(&request, index, LinkAttribute::Address(mac.to_vec()))
    }

    /// Set the link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let request = format!("RTM_SETLINK mtu {mtu} on ifindex {index}");
        self.set_link_attribute(&request, index, LinkAttribute::Mtu(mtu))
    }

    /// Set the length of the link's transmit queue (for a TAP: how many packets the
    /// kernel holds for the reader before it drops).
    pub fn set_txqlen(&mut self, index: u32, qlen: u32) -> Result<(), NetlinkError> {
        let request = format!("RTM_SETLINK txqueuelen {qlen} on ifindex {index}");
        self.set_link_attribute(&request, index, LinkAttribute::TxQueueLen(qlen))
    }

    /// Make the link's root queueing discipline `noqueue`: packets go straight to the
    /// driver. For a TAP the qdisc only adds a hop (the TAP never stops its queue; it
    /// drops when its own ring, `txqueuelen` long, is full), and the default `pfifo_fast`
    /// allocates a ring per band of `txqueuelen` entries when the link comes up, which
    /// measured 6 to 250 ms for a 10000-packet queue. Set it before bringing the link up.
    pub fn set_noqueue(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        msg.attributes.push(TcAttribute::Kind("noqueue".into()));
        let request = format!("RTM_NEWQDISC root noqueue on ifindex {index}");
        self.request(
            &request,
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Kind::Ack,
        )
        .map(drop)
    }

    /// Rename the link. The kernel refuses (`EBUSY`) to rename most links
    /// while they are up.
    pub fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        check_name(name)?;
        let request = format!("RTM_SETLINK name {name:?} on ifindex {index}");
        self.set_link_attribute(&request, index, LinkAttribute::IfName(name.to_owned()))
    }

    fn set_link_attribute(
        &mut self,
        request: &str,
        index: u32,
        attribute: LinkAttribute,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attribute);
        self.request(request, RouteNetlinkMessage::SetLink(msg), 0, Kind::Ack)
            .map(drop)
    }

    /// Delete the link.
    pub fn del_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let request = format!("RTM_DELLINK ifindex {index}");
        self.request(&request, RouteNetlinkMessage::DelLink(msg), 0, Kind::Ack)
            .map(drop)
    }

    /// Add `addr/prefix` to the link. An address that is already there is
    /// success (idempotent).
    pub fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let msg = address_message(index, addr, prefix)?;
        let request = format!("RTM_NEWADDR {addr}/{prefix} on ifindex {index}");
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        match self.request(
            &request,
            RouteNetlinkMessage::NewAddress(msg),
            flags,
            Kind::Ack,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kernel_errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Remove `addr/prefix` from the link.
    pub fn del_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let msg = address_message(index, addr, prefix)?;
        let request = format!("RTM_DELADDR {addr}/{prefix} on ifindex {index}");
        self.request(&request, RouteNetlinkMessage::DelAddress(msg), 0, Kind::Ack)
            .map(drop)
    }

    /// The addresses (IPv4 and IPv6, link-local included) of the link.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        let request = format!("RTM_GETADDR dump for ifindex {index}");
        let replies = self.request(
            &request,
            RouteNetlinkMessage::GetAddress(msg),
            0,
            Kind::Dump,
        )?;
        // Without NETLINK_GET_STRICT_CHK the kernel ignores the index filter.
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    address_of(&a).map(|ip| (ip, a.header.prefix_len))
                }
                _ => None,
            })
            .collect())
    }

    /// Add a default route via `gateway` out of the link. A route that is
    /// already there is success.
    pub fn add_default_route(&mut self, gateway: IpAddr, index: u32) -> Result<(), NetlinkError> {
        match self.new_route(None, Some(gateway), index) {
            Err(e) if e.kernel_errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Add a route to `dst/prefix` out of the link, via `gateway` or directly
    /// connected. An existing route to the same prefix is an error (`EEXIST`).
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        self.new_route(Some((dst, prefix)), gateway, index)
    }

    fn new_route(
        &mut self,
        dst: Option<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let msg = route_message(dst, gateway, index)?;
        let mut request = String::from("RTM_NEWROUTE ");
        match dst {
            Some((addr, prefix)) => request.push_str(&format!("{addr}/{prefix}")),
            None => request.push_str("default"),
        }
        if let Some(gw) = gateway {
            request.push_str(&format!(" via {gw}"));
        }
        request.push_str(&format!(" dev ifindex {index}"));
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.request(
            &request,
            RouteNetlinkMessage::NewRoute(msg),
            flags,
            Kind::Ack,
        )
        .map(drop)
    }

    /// Set the route to `dst/prefix` via `gateway` out of the link, marked on-link (the
    /// gateway need not be in a subnet of the link, as Flannel routes to other nodes),
    /// replacing any route to that prefix.
    pub fn replace_route_onlink(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let mut msg = route_message(Some((dst, prefix)), Some(gateway), index)?;
        msg.header.flags = RouteFlags::Onlink;
        let request =
            format!("RTM_NEWROUTE {dst}/{prefix} via {gateway} dev ifindex {index} onlink");
        self.request(
            &request,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            Kind::Ack,
        )
        .map(drop)
    }

    /// Delete the route to `dst/prefix` of the main table via `gateway` on the link
    /// `index`, as the routes above add it (the kernel matches gateway, link and protocol
    /// too: a route to the prefix through anything else stays); one that is not there is
    /// success.
    pub fn del_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let mut msg = route_message(Some((dst, prefix)), Some(gateway), index)?;
        // Any scope.
        msg.header.scope = RouteScope::NoWhere;
        let request = format!("RTM_DELROUTE {dst}/{prefix} via {gateway} dev ifindex {index}");
        match self.request(&request, RouteNetlinkMessage::DelRoute(msg), 0, Kind::Ack) {
            Err(e) if e.kernel_errno() == Some(libc::ESRCH) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The link that holds the address `ip`, if any.
    pub fn address_owner(&mut self, ip: IpAddr) -> Result<Option<u32>, NetlinkError> {
        let msg = AddressMessage::default();
        let replies = self.request(
            "RTM_GETADDR dump",
            RouteNetlinkMessage::GetAddress(msg),
            0,
            Kind::Dump,
        )?;
        Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if address_of(&a) == Some(ip) => {
                Some(a.header.index)
            }
            _ => None,
        }))
    }

    /// The unicast routes of the main table, IPv6 if `v6`, else IPv4.
    pub fn routes(&mut self, v6: bool) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let request = format!("RTM_GETROUTE dump ({})", if v6 { "IPv6" } else { "IPv4" });
        let replies = self.request(&request, RouteNetlinkMessage::GetRoute(msg), 0, Kind::Dump)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_info(&r),
                _ => None,
            })
            .collect())
    }

    /// Send one request and collect the replies, retrying a dump that the
    /// kernel marked as interrupted.
    fn request(
        &mut self,
        request: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        kind: Kind,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            let (replies, interrupted) = self.transact(request, msg.clone(), flags, kind)?;
            if !interrupted {
                return Ok(replies);
            }
            tracing::debug!(request, "netlink dump interrupted, retrying");
        }
        Err(NetlinkError::DumpInterrupted {
            request: request.to_owned(),
        })
    }

    /// One round trip. Returns the replies and whether the dump was interrupted.
    fn transact(
        &mut self,
        request: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        kind: Kind,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), NetlinkError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST
            | flags
            | match kind {
                Kind::Ack => NLM_F_ACK,
                Kind::Dump => NLM_F_DUMP,
            };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        let sent = self
            .socket
            .send(&out, 0)
            .map_err(|source| NetlinkError::Send {
                request: request.to_owned(),
                source,
            })?;
        if sent != out.len() {
            return Err(NetlinkError::Protocol {
                request: request.to_owned(),
                what: "the request was sent only in part",
            });
        }

        let mut replies = Vec::new();
        let mut interrupted = false;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let len = self.recv_datagram(request, &mut buf)?;
            let mut off = 0;
            while off < len {
                let (bytes, msg_seq, advance) = split_one(request, &buf[off..len])?;
                off += advance;
                if msg_seq != seq {
                    // An answer to an earlier request that gave up early.
                    tracing::debug!(request, seq = msg_seq, "stale netlink reply skipped");
                    continue;
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(
                    |source| NetlinkError::Decode {
                        request: request.to_owned(),
                        source,
                    },
                )?;
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let outer_flags = msg.header.flags;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok((replies, interrupted)),
                        Some(code) => {
                            return Err(NetlinkError::Kernel {
                                request: request.to_owned(),
                                detail: error_extack(outer_flags, &e.header),
                                source: io::Error::from_raw_os_error(code.get().saturating_abs()),
                            });
                        }
                    },
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            let detail = if outer_flags & NLM_F_ACK_TLVS != 0 {
                                extack_message(&d.extended_ack)
                            } else {
                                None
                            };
                            return Err(NetlinkError::Kernel {
                                request: request.to_owned(),
                                detail,
                                source: io::Error::from_raw_os_error(d.code.saturating_abs()),
                            });
                        }
                        return Ok((replies, interrupted));
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Protocol {
                            request: request.to_owned(),
                            what: "the kernel reported an overrun (NLMSG_OVERRUN)",
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Receive one datagram into `buf`, growing it to the datagram's size.
    fn recv_datagram(&self, request: &str, buf: &mut Vec<u8>) -> Result<usize, NetlinkError> {
        let recv_error = |source| NetlinkError::Recv {
            request: request.to_owned(),
            source,
        };
        let size = {
            let mut window: &mut [u8] = &mut buf[..];
            self.socket
                .recv(&mut window, libc::MSG_PEEK | libc::MSG_TRUNC)
                .map_err(recv_error)?
        };
        if size > buf.len() {
            buf.resize(size, 0);
        }
        let mut window: &mut [u8] = &mut buf[..];
        let len = self.socket.recv(&mut window, 0).map_err(recv_error)?;
        Ok(len.min(buf.len()))
    }
}

/// The first netlink message of `bytes`, its sequence number, and how far
/// to advance to the next one.
fn split_one<'a>(request: &str, bytes: &'a [u8]) -> Result<(&'a [u8], u32, usize), NetlinkError> {
    let buffer = NetlinkBuffer::new_checked(bytes).map_err(|source| NetlinkError::Decode {
        request: request.to_owned(),
        source,
    })?;
    // new_checked ensured 16 <= length <= bytes.len().
    let len = buffer.length() as usize;
    let advance = align4(len).min(bytes.len());
    Ok((&bytes[..len], buffer.sequence_number(), advance))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// The extended-ack text of an `NLMSG_ERROR` whose payload after the error
/// code is `rest`: the request's header (and body unless capped), then TLVs.
fn error_extack(outer_flags: u16, rest: &[u8]) -> Option<String> {
    if outer_flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let skip = if outer_flags & NLM_F_CAPPED != 0 {
        NLMSG_HDR_LEN
    } else {
        let len = rest.get(..4)?;
        align4(u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize)
    };
    extack_message(rest.get(skip..)?)
}

fn extack_message(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let value = nla.value();
            let text = value.split(|&b| b == 0).next().unwrap_or(value);
            String::from_utf8_lossy(text).into_owned()
        })
        .filter(|text| !text.is_empty())
}

fn check_name(name: &str) -> Result<(), NetlinkError> {
    super::validate_ifname(name).map_err(|reason| NetlinkError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn check_prefix(addr: IpAddr, prefix: u8) -> Result<(), NetlinkError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(NetlinkError::InvalidPrefix { addr, prefix });
    }
    Ok(())
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address_message(index: u32, addr: IpAddr, prefix: u8) -> Result<AddressMessage, NetlinkError> {
    check_prefix(addr, prefix)?;
    let mut msg = AddressMessage::default();
    msg.header.family = family(addr);
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.header.scope = if addr.is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    // As iproute2 does: IFA_LOCAL is the address for IPv4 (IFA_ADDRESS would
    // be the peer of a point-to-point link), IFA_ADDRESS for IPv6.
    if let IpAddr::V4(v4) = addr {
        msg.attributes.push(AddressAttribute::Local(addr));
        if prefix < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(broadcast(v4, prefix)));
        }
    }
    msg.attributes.push(AddressAttribute::Address(addr));
    Ok(msg)
}

fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) | host_mask)
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &msg.attributes {
        match attribute {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

fn route_message(
    dst: Option<(IpAddr, u8)>,
    gateway: Option<IpAddr>,
    index: u32,
) -> Result<RouteMessage, NetlinkError> {
    if let Some((addr, prefix)) = dst {
        check_prefix(addr, prefix)?;
    }
    if let (Some((dst, _)), Some(gw)) = (dst, gateway)
        && dst.is_ipv4() != gw.is_ipv4()
    {
        return Err(NetlinkError::MixedFamilies { dst, gateway: gw });
    }
    let family_of = dst.map(|(a, _)| a).or(gateway).map(family);
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of.unwrap_or(AddressFamily::Inet);
    msg.header.destination_prefix_length = dst.map_or(0, |(_, p)| p);
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = if gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.header.kind = RouteType::Unicast;
    if let Some((addr, prefix)) = dst
        && prefix > 0
    {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    }
    if let Some(gw) = gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    Ok(msg)
}

fn route_address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn route_info(msg: &RouteMessage) -> Option<RouteInfo> {
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for attribute in &msg.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = route_address(a),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || msg.header.kind != RouteType::Unicast {
        return None;
    }
    let prefix = msg.header.destination_prefix_length;
    // No RTA_DST (with a zero prefix) is the default route.
    let dst = dst.map(|addr| (addr, prefix));
    Some(RouteInfo { dst, gateway, oif })
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attribute in &msg.attributes {
        match attribute {
            LinkAttribute::IfName(name) => info.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Address(mac) => {
                if let Ok(mac) = <[u8; 6]>::try_from(mac.as_slice()) {
                    info.mac = mac;
                }
            }
            _ => {}
        }
    }
    info
}

struct MacText([u8; 6]);

impl fmt::Display for MacText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn broadcast_of_a_prefix() {
        let a = Ipv4Addr::new(10, 244, 1, 5);
        assert_eq!(broadcast(a, 24), Ipv4Addr::new(10, 244, 1, 255));
        assert_eq!(broadcast(a, 16), Ipv4Addr::new(10, 244, 255, 255));
        assert_eq!(broadcast(a, 0), Ipv4Addr::BROADCAST);
        assert_eq!(broadcast(a, 32), a);
    }

    #[test]
    fn bad_prefix_and_mixed_families_are_refused() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(matches!(
            address_message(1, v4, 33),
            Err(NetlinkError::InvalidPrefix { prefix: 33, .. })
        ));
        assert!(address_message(1, v6, 128).is_ok());
        assert!(matches!(
            route_message(Some((v4, 8)), Some(v6), 1),
            Err(NetlinkError::MixedFamilies { .. })
        ));
    }

    #[test]
    fn route_message_for_a_default_route_has_no_destination() {
        let gw = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let msg = route_message(None, Some(gw), 7).unwrap();
        assert_eq!(msg.header.destination_prefix_length, 0);
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_MAIN);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_)))
        );
        assert_eq!(route_info(&msg).unwrap().dst, None);
        assert_eq!(route_info(&msg).unwrap().gateway, Some(gw));
        assert_eq!(route_info(&msg).unwrap().oif, Some(7));
    }

    #[test]
    fn kernel_error_names_the_request() {
        let e = NetlinkError::Kernel {
            request: "RTM_NEWADDR 10.0.0.2/24 on ifindex 7".into(),
            detail: None,
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert!(
            e.to_string()
                .starts_with("RTM_NEWADDR 10.0.0.2/24 on ifindex 7: File exists"),
            "{e}"
        );
        assert_eq!(e.kernel_errno(), Some(libc::EEXIST));
    }

    #[test]
    fn extack_text_is_found_after_a_capped_header() {
        let mut rest = vec![0u8; NLMSG_HDR_LEN];
        // NLA: len 4 + 6 ("oops\0" padded), type 1.
        rest.extend_from_slice(&9u16.to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(b"oops\0\0\0\0");
        let text = error_extack(NLM_F_ACK_TLVS | NLM_F_CAPPED, &rest);
        assert_eq!(text.as_deref(), Some("oops"));
        assert_eq!(error_extack(0, &rest), None);
        // Garbage is not a panic.
        assert_eq!(error_extack(NLM_F_ACK_TLVS, &[0xff; 3]), None);
        assert_eq!(error_extack(NLM_F_ACK_TLVS, &[0xff; 40]), None);
    }

    #[test]
    fn split_one_refuses_a_lying_length() {
        let mut bytes = vec![0u8; 20];
        bytes[..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(matches!(
            split_one("x", &bytes),
            Err(NetlinkError::Decode { .. })
        ));
        bytes[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            split_one("x", &bytes),
            Err(NetlinkError::Decode { .. })
        ));
        bytes[..4].copy_from_slice(&18u32.to_ne_bytes());
        let (msg, _, advance) = split_one("x", &bytes).unwrap();
        assert_eq!((msg.len(), advance), (18, 20));
    }
}
