//! NAT on packet bytes (placeholder until the real one lands).

use crate::dp::packet::Packet;
use crate::flow::Layers;
use std::net::IpAddr;
use vswitch_proto::flow::Flow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub icmp_id: Option<u16>,
    pub icmp_type: u8,
}

pub fn nat_packet(
    _pkt: &mut Packet,
    _key: &Flow,
    _layers: &Layers,
    _src: Option<Endpoint>,
    _dst: Option<Endpoint>,
) -> bool {
    false
}

pub fn icmp_error_quote(_pkt: &Packet, _key: &Flow, _layers: &Layers) -> Option<Quoted> {
    None
}

pub fn nat_icmp_error(
    _pkt: &mut Packet,
    _key: &Flow,
    _layers: &Layers,
    _outer_src: Option<IpAddr>,
    _outer_dst: Option<IpAddr>,
    _inner_src: Option<Endpoint>,
    _inner_dst: Option<Endpoint>,
) -> bool {
    false
}
