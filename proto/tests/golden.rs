//! Golden files for the flow and group syntax, in `tests/golden/`.
//!
//! Regenerate the `.expected` files after a deliberate change with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p vswitch-proto --test golden
//! ```
//!
//! and review the diff. `ovs_oracle.tsv` holds what Open vSwitch 3.1 prints for the same
//! inputs (regenerate it with `tests/golden/ovs_oracle.sh`, which needs Open vSwitch
//! installed); our output must equal it, except for the lines listed, with a reason, in
//! `ovs_differences.txt`.
//!
//! Input files: one line per case; blank lines and lines starting with `#` are comments and
//! are copied to the `.expected` file, so the two files line up.

mod common;

use common::TestPorts;
use std::collections::HashMap;
use std::path::PathBuf;
use vswitch_proto::text::{ParseError, display_flow, display_group, parse_flow, parse_group};
use vswitch_proto::{FlowSpec, GroupSpec, Usage};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn is_case(line: &str) -> bool {
    !line.trim().is_empty() && !line.starts_with('#')
}

fn cases(name: &str) -> Vec<String> {
    read(name)
        .lines()
        .filter(|l| is_case(l))
        .map(str::to_string)
        .collect()
}

/// Map every case of `input` through `f` and compare with `expected` (or rewrite it).
fn golden(input: &str, expected: &str, f: impl Fn(&str) -> String) {
    let mut out = String::new();
    for line in read(input).lines() {
        if is_case(line) {
            out.push_str(&f(line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let path = dir().join(expected);
    let broken: Vec<&str> = out.lines().filter(|l| l.starts_with(BROKEN)).collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
        assert!(broken.is_empty(), "{}", broken.join("\n"));
        return;
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    let want = read(expected);
    let mut diffs = Vec::new();
    for (i, (got, want)) in out.lines().zip(want.lines()).enumerate() {
        if got != want {
            diffs.push(format!(
                "{expected}:{}:\n  got:  {got}\n  want: {want}",
                i + 1
            ));
        }
    }
    assert_eq!(
        out.lines().count(),
        want.lines().count(),
        "{expected}: line count differs; run with UPDATE_GOLDEN=1"
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Marks a case that does not behave as its file says (a good line that fails, a bad line
/// that parses, a printed form that does not read back).
const BROKEN: &str = "BROKEN: ";

fn flow(line: &str) -> Result<FlowSpec, ParseError> {
    parse_flow(line, Usage::Add, &TestPorts)
}

fn show_flow(spec: &FlowSpec) -> String {
    display_flow(spec, &TestPorts, None).to_string()
}

fn show_group(g: &GroupSpec) -> String {
    display_group(g, &TestPorts).to_string()
}

#[test]
fn flows() {
    golden("flows.txt", "flows.expected", |line| match flow(line) {
        Ok(spec) => {
            let out = show_flow(&spec);
            match flow(&out) {
                Err(e) => format!("{BROKEN}{out} does not parse back: {e}"),
                Ok(again) if again != spec => format!("{BROKEN}{out} parses back differently"),
                Ok(again) if show_flow(&again) != out => format!("{BROKEN}{out} is not stable"),
                Ok(_) => out,
            }
        }
        Err(e) => format!("{BROKEN}good flow fails: {e}"),
    });
}

#[test]
fn bad_flows() {
    golden("bad_flows.txt", "bad_flows.expected", |line| {
        match flow(line) {
            Ok(spec) => format!("{BROKEN}bad flow parses as {}", show_flow(&spec)),
            Err(e) => {
                assert!(e.offset <= line.len(), "{line}: offset past the end");
                e.to_string()
            }
        }
    });
}

#[test]
fn groups() {
    golden("groups.txt", "groups.expected", |line| {
        match parse_group(line, &TestPorts) {
            Ok(g) => {
                let out = show_group(&g);
                match parse_group(&out, &TestPorts) {
                    Err(e) => format!("{BROKEN}{out} does not parse back: {e}"),
                    Ok(again) if again != g => format!("{BROKEN}{out} parses back differently"),
                    Ok(again) if show_group(&again) != out => {
                        format!("{BROKEN}{out} is not stable")
                    }
                    Ok(_) => out,
                }
            }
            Err(e) => format!("{BROKEN}good group fails: {e}"),
        }
    });
}

#[test]
fn bad_groups() {
    golden(
        "bad_groups.txt",
        "bad_groups.expected",
        |line| match parse_group(line, &TestPorts) {
            Ok(g) => format!("{BROKEN}bad group parses as {}", show_group(&g)),
            Err(e) => {
                assert!(e.offset <= line.len(), "{line}: offset past the end");
                e.to_string()
            }
        },
    );
}

/// Our output equals Open vSwitch's for every golden line it accepts, except for the listed
/// differences, and the oracle file covers every golden line.
#[test]
fn ovs_oracle() {
    let mut oracle: HashMap<(String, String), String> = HashMap::new();
    for l in read("ovs_oracle.tsv").lines().filter(|l| is_case(l)) {
        let mut parts = l.splitn(3, '\t');
        let (kind, input, out) = (parts.next(), parts.next(), parts.next());
        let (Some(kind), Some(input), Some(out)) = (kind, input, out) else {
            panic!("ovs_oracle.tsv: bad line {l:?}");
        };
        oracle.insert((kind.to_string(), input.to_string()), out.to_string());
    }
    let mut differences: HashMap<String, String> = HashMap::new();
    for l in read("ovs_differences.txt").lines().filter(|l| is_case(l)) {
        let (input, reason) = l
            .split_once('\t')
            .unwrap_or_else(|| panic!("ovs_differences.txt: want INPUT<TAB>REASON: {l:?}"));
        differences.insert(input.to_string(), reason.to_string());
    }
    let mut problems = Vec::new();
    let mut agree = 0;
    let mut check = |kind: &str, input: &str, ours: String| {
        let Some(theirs) = oracle.get(&(kind.to_string(), input.to_string())) else {
            problems.push(format!(
                "not in ovs_oracle.tsv (rerun ovs_oracle.sh): {input}"
            ));
            return;
        };
        if theirs.starts_with('!') {
            if !differences.contains_key(input) {
                problems.push(format!(
                    "Open vSwitch rejects it ({theirs}) but ovs_differences.txt does not say why: \
                     {input}"
                ));
            }
            return;
        }
        match (differences.get(input), &ours == theirs) {
            (None, true) => agree += 1,
            (None, false) => problems.push(format!(
                "differs from Open vSwitch:\n  input: {input}\n  ours:  {ours}\n  OVS:   {theirs}"
            )),
            (Some(_), true) => problems.push(format!(
                "listed in ovs_differences.txt but agrees with Open vSwitch: {input}"
            )),
            (Some(_), false) => {}
        }
    };
    for line in cases("flows.txt") {
        let ours = flow(&line).map(|s| show_flow(&s)).unwrap_or_default();
        check("flow", &line, ours);
    }
    for line in cases("groups.txt") {
        let ours = parse_group(&line, &TestPorts)
            .map(|g| show_group(&g))
            .unwrap_or_default();
        check("group", &line, ours);
    }
    let used: Vec<&String> = differences
        .keys()
        .filter(|d| !cases("flows.txt").contains(d) && !cases("groups.txt").contains(d))
        .collect();
    assert!(
        used.is_empty(),
        "ovs_differences.txt lists lines that are not golden: {used:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(agree >= 100, "only {agree} lines agree with Open vSwitch");
}
