//! Run a pipeline script (see `vswitch_tests::script`) and print every trace, the way
//! `ovs-appctl ofproto/trace` would show it.
//!
//! Usage: trace-script FILE...
#![forbid(unsafe_code)]

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: trace-script FILE...");
        std::process::exit(2);
    }
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{f}: {e}");
                std::process::exit(1);
            }
        };
        match vswitch_tests::script::run_with(&text, &mut |t| println!("{t}")) {
            Ok(n) => println!("{f}: {n} traces, every expectation met"),
            Err(e) => {
                eprintln!("{f}: {e}");
                std::process::exit(1);
            }
        }
    }
}
