//! Fuzz the manifest reader as `vswitchctl apply -f` uses it: `load_documents` on arbitrary
//! text, then `node_spec` on every Node, and the switch's registry of kinds on every object
//! of a kind it knows (`Kind::read`, then `to_object`, what `get -o yaml` shows and the
//! state file keeps). Nothing may panic or overflow the stack (deep nesting, aliases, huge
//! documents counts), and:
//! - every object is a mapping with a string `kind` and `apiVersion`, and documents are
//!   numbered from 1, in order;
//! - the objects fit in an `apply` request that serde_json reads back (their nesting stays
//!   under its recursion limit);
//! - an object written as JSON and loaded again is what serde_json reads from that JSON
//!   (the same object, but for the last bit of a float: serde_json's float parsing is not
//!   correctly rounded), and a Node reads the same;
//! - an object the registry reads, written back as the switch keeps it, reads the same;
//! - the address parsers (`MacAddr`, `Ipv4Cidr`, `IfAddr`) take the input's text back
//!   from what they print.
//!
//! Run: `cd fuzz && cargo fuzz run -s none manifest -- -max_total_time=60`
//! (seed corpus: `corpus/seeds/manifest/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::k8s::{Stored, kind_of};
use vswitch_proto::k8s::{NODE_KIND, load_documents, node_spec, object_kind_name};
use vswitch_proto::net::{IfAddr, Ipv4Cidr, MacAddr};
use vswitch_proto::rpc::{ApplyParams, Request, method};

/// A value the parser takes prints as text it takes back as the same value.
fn round_trips<T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug>(s: &str) {
    if let Ok(v) = s.parse::<T>() {
        assert_eq!(v.to_string().parse::<T>().ok(), Some(v), "{s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(8) {
        round_trips::<MacAddr>(line);
        round_trips::<Ipv4Cidr>(line);
        round_trips::<IfAddr>(line);
    }
    let Ok(objects) = load_documents("fuzz.yaml", &text) else {
        return;
    };
    let mut last_doc = 1;
    for o in &objects {
        assert_eq!(o.source, "fuzz.yaml");
        assert!(o.doc >= last_doc, "documents out of order");
        last_doc = o.doc;
        assert!(o.object["kind"].is_string() && o.object["apiVersion"].is_string());
        let _ = object_kind_name(&o.object);
        let spec = (o.object["kind"] == NODE_KIND).then(|| node_spec(&o.object));

        let json = serde_json::to_string(&o.object).expect("a Value serialises");
        let again = load_documents("again.json", &json)
            .unwrap_or_else(|e| panic!("{json} does not load again: {e}"));
        assert_eq!(again.len(), 1, "{json}");
        assert_eq!(again[0].doc, 1);
        let reread: serde_json::Value = serde_json::from_str(&json).expect("JSON reads back");
        assert_eq!(again[0].object, reread, "{json}");
        if let Some(spec) = spec {
            assert_eq!(node_spec(&again[0].object), spec);
        }
        let api = o.object["apiVersion"].as_str().unwrap_or_default();
        if let Some(kind) = kind_of(o.object["kind"].as_str().unwrap_or_default(), api)
            && let Ok((key, spec)) = kind.read(&o.object)
        {
            let stored = Stored {
                spec: spec.clone(),
                source: "fuzz".into(),
                id: 1,
            };
            let kept = kind.to_object(&key, &stored);
            let (key2, spec2) = kind
                .read(&kept)
                .unwrap_or_else(|e| panic!("{kept} as kept does not read again: {e}"));
            assert_eq!((key2, spec2), (key, spec), "{kept}");
        }
    }
    let n = objects.len();
    let request = Request::new(1, method::APPLY, ApplyParams { objects });
    let wire = serde_json::to_string(&request).expect("a request serialises");
    let back: Request = serde_json::from_str(&wire).expect("the switch can read the request");
    let params: ApplyParams = serde_json::from_value(back.params).expect("and its params");
    assert_eq!(params.objects.len(), n);
});
