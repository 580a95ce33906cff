//! Logs: text or JSON, to stderr or to a file that can be reopened (after logrotate moved
//! it) on SIGHUP or the `reopen-logs` call.

use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go.
#[derive(Debug, Clone)]
pub struct LogTarget {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogTarget {
    /// Log to `file`, or to stderr when `None`.
    pub fn new(file: Option<PathBuf>) -> io::Result<LogTarget> {
        Ok(LogTarget {
            file: match file {
                Some(p) => {
                    let f = open(&p)?;
                    Some((p, Arc::new(Mutex::new(f))))
                }
                None => None,
            },
        })
    }

    /// Open the log file again by name (no-op when logging to stderr).
    pub fn reopen(&self) -> io::Result<()> {
        if let Some((path, f)) = &self.file {
            *f.lock() = open(path)?;
        }
        Ok(())
    }
}

/// One log line's writer.
#[derive(Debug)]
pub enum LogWriter {
    Stderr(io::Stderr),
    File(Arc<Mutex<File>>),
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LogWriter::Stderr(s) => s.write(buf),
            LogWriter::File(f) => f.lock().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LogWriter::Stderr(s) => s.flush(),
            LogWriter::File(f) => f.lock().flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        match &self.file {
            Some((_, f)) => LogWriter::File(f.clone()),
            None => LogWriter::Stderr(io::stderr()),
        }
    }
}

/// Install the global subscriber. `level` is an `EnvFilter` directive (`info`,
/// `vswitch=debug,warn`).
pub fn init(target: LogTarget, json: bool, level: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("bad --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(target)
        .with_ansi(false);
    let res = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    res.map_err(|e| e.to_string())
}
