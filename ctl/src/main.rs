//! vswitchctl: programs and inspects a running vswitchd over its control socket.
//!
//! Exit status: 0 done; 1 the switch refused (its message on stderr; also when it refuses
//! this user or has no room for the connection), answered something
//! unreadable, or refused an object of a manifest, or a manifest did not load; 2 usage
//! error; 3 the switch is not reachable.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod error;
mod output;
mod yaml;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let mut out = String::new();
    let result = commands::run(cli, &mut out);
    let written = io::stdout().lock().write_all(out.as_bytes());
    match (result, written) {
        (Err(f), _) => {
            match &f {
                // Already in kubectl's form (`error: ...`, `Error from server ...`), one a line.
                error::Failure::Reported(lines) => eprint!("{lines}"),
                _ => eprintln!("vswitchctl: {}", f.to_string().trim_end()),
            }
            ExitCode::from(f.exit_code() as u8)
        }
        // `vswitchctl dump-flows | head` is not a failure.
        (Ok(()), Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("vswitchctl: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        (Ok(()), _) => ExitCode::SUCCESS,
    }
}
