//! Fuzz the flow syntax: every parser (flows for each usage, groups, matches) on arbitrary
//! text must not panic, and whatever it accepts must print and parse back to the same value,
//! printing the same text again.
//!
//! Run: `cd fuzz && cargo fuzz run -s none flow_syntax -- -max_total_time=60`
//! (seed corpus: `corpus/seeds/flow_syntax/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch_proto::Usage;
use vswitch_proto::text::{
    NoPortNames, PortNames, display_flow, display_group, display_match, parse_flow, parse_group,
    parse_match,
};

/// A few port names, some of which must be quoted, so names are exercised too.
struct Ports;

const PORTS: &[(u32, &str)] = &[
    (1, "pod1"),
    (2, "pod2"),
    (5, "2x"),
    (6, "a.b-c_d"),
    (7, "local"),
];

impl PortNames for Ports {
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

fn check(s: &str, ports: &dyn PortNames) {
    for usage in [Usage::Add, Usage::Modify, Usage::Select] {
        if let Ok(spec) = parse_flow(s, usage, ports) {
            let text = display_flow(&spec, ports, None).to_string();
            let again = parse_flow(&text, usage, ports)
                .unwrap_or_else(|e| panic!("{s:?} printed as {text:?} fails: {e}"));
            assert_eq!(again, spec, "{s:?} printed as {text:?}");
            assert_eq!(display_flow(&again, ports, None).to_string(), text);
        }
    }
    if let Ok(g) = parse_group(s, ports) {
        let text = display_group(&g, ports).to_string();
        let again = parse_group(&text, ports)
            .unwrap_or_else(|e| panic!("{s:?} printed as {text:?} fails: {e}"));
        assert_eq!(again, g, "{s:?} printed as {text:?}");
        assert_eq!(display_group(&again, ports).to_string(), text);
    }
    if let Ok(m) = parse_match(s, ports) {
        let text = display_match(&m, None, ports).to_string();
        let again = parse_match(&text, ports)
            .unwrap_or_else(|e| panic!("{s:?} printed as {text:?} fails: {e}"));
        assert_eq!(again, m, "{s:?} printed as {text:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s, &Ports);
        check(s, &NoPortNames);
    }
});
