//! vswitchctl: programs and inspects a running vswitchd.
#![forbid(unsafe_code)]

fn main() {
    // The control socket client arrives with the daemon; until then only `version`
    // and offline flow-syntax checking are offered.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version") | Some("--version") => {
            println!("vswitchctl {}", env!("CARGO_PKG_VERSION"));
        }
        _ => {
            eprintln!("usage: vswitchctl version");
            std::process::exit(2);
        }
    }
}
