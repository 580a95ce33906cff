//! Fuzz the manifest reader as `vswitchctl apply -f` uses it: `load_documents` on arbitrary
//! text, then `node_spec` on every Node. Nothing may panic or overflow the stack (deep
//! nesting, aliases, huge documents counts), and:
//! - every object is a mapping with a string `kind` and `apiVersion`, and documents are
//!   numbered from 1, in order;
//! - the objects fit in an `apply` request that serde_json reads back (their nesting stays
//!   under its recursion limit);
//! - an object written as JSON and loaded again is what serde_json reads from that JSON
//!   (the same object, but for the last bit of a float: serde_json's float parsing is not
//!   correctly rounded), and a Node reads the same.
//!
//! Run: `cd fuzz && cargo fuzz run -s none manifest -- -max_total_time=60`
//! (seed corpus: `corpus/seeds/manifest/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch_proto::k8s::{NODE_KIND, load_documents, node_spec, object_kind_name};
use vswitch_proto::rpc::{ApplyParams, Request, method};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
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
    }
    let n = objects.len();
    let request = Request::new(1, method::APPLY, ApplyParams { objects });
    let wire = serde_json::to_string(&request).expect("a request serialises");
    let back: Request = serde_json::from_str(&wire).expect("the switch can read the request");
    let params: ApplyParams = serde_json::from_value(back.params).expect("and its params");
    assert_eq!(params.objects.len(), n);
});
