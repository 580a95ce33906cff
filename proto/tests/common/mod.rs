//! Port names shared by the golden and property tests. `golden/ovs_oracle.sh` creates the
//! same ports (same names and numbers) in the Open vSwitch it compares against.

use vswitch_proto::text::PortNames;

/// (number, name). "my port" cannot be written in Open vSwitch's flow syntax (its lexer
/// does not know quotes), but it prints it quoted, as we do.
pub const PORTS: &[(u32, &str)] = &[
    (1, "pod1"),
    (2, "pod2"),
    (3, "gw0"),
    (4, "tun0"),
    (5, "2x"),
    (6, "a.b-c_d"),
    (7, "my port"),
];

#[derive(Debug, Default, Clone, Copy)]
pub struct TestPorts;

impl PortNames for TestPorts {
    fn port_no(&self, name: &str) -> Option<u32> {
        PORTS.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }
    fn port_name(&self, no: u32) -> Option<String> {
        PORTS
            .iter()
            .find(|(p, _)| *p == no)
            .map(|(_, n)| n.to_string())
    }
}
