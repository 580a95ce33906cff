//! Requests out of a control connection's byte stream: one a line, at most `max` bytes
//! each. A longer one is dropped as soon as it is known to be too long and the rest of it
//! discarded as it arrives, so a connection never holds more than `max` bytes of a line
//! (plus one read).

/// What [`Framer::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// A whole request, without its newline.
    Request(Vec<u8>),
    /// A whole request over the limit, dropped: answer it with an error.
    TooLong,
    /// The start of a request over the limit: what follows, up to its newline, is
    /// discarded ([`Framer::feed`] says when it ended).
    Skipping,
    Nothing,
}

/// The bytes received and not yet taken as requests.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// Bytes before `start` were taken; those before `scanned` hold no newline.
    input: Vec<u8>,
    start: usize,
    scanned: usize,
    skipping: bool,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            max,
            input: Vec::new(),
            start: 0,
            scanned: 0,
            skipping: false,
        }
    }

    /// Bytes held that are not yet a request.
    pub fn pending(&self) -> usize {
        self.input.len() - self.start
    }

    /// What the buffer holds of memory.
    pub fn capacity(&self) -> usize {
        self.input.capacity()
    }

    /// Discarding an over-long request.
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// How much more may be fed before the line under way is known to be too long.
    pub fn line_room(&self) -> usize {
        if self.skipping {
            usize::MAX
        } else {
            (self.max + 1).saturating_sub(self.pending())
        }
    }

    /// Add received bytes. `true` when they ended a request that was being skipped: it is
    /// owed a too-long error.
    pub fn feed(&mut self, got: &[u8]) -> bool {
        if self.skipping {
            let Some(i) = got.iter().position(|&b| b == b'\n') else {
                return false;
            };
            self.skipping = false;
            self.push(&got[i + 1..]);
            return true;
        }
        self.push(got);
        false
    }

    fn push(&mut self, got: &[u8]) {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        // Double, but never far past the largest request.
        let n = got.len();
        if self.input.capacity() - self.input.len() < n {
            let len = self.input.len();
            let want = (self.input.capacity() * 2)
                .min(self.max.saturating_add(n))
                .max(len + n);
            self.input.reserve_exact(want - len);
        }
        self.input.extend_from_slice(got);
    }

    /// The next whole request, if any.
    pub fn take(&mut self) -> Taken {
        if self.skipping {
            return Taken::Nothing;
        }
        let from = self.scanned.max(self.start);
        if let Some(i) = self.input[from..].iter().position(|&b| b == b'\n') {
            let end = from + i;
            let line = if self.start == 0 && end + 1 == self.input.len() {
                // The whole buffer is one request: hand it over without a copy.
                let mut all = std::mem::take(&mut self.input);
                all.truncate(end);
                all
            } else {
                let line = self.input[self.start..end].to_vec();
                self.start = end + 1;
                line
            };
            if self.start >= self.input.len() {
                self.input.clear();
                self.start = 0;
            }
            self.scanned = self.start;
            if line.len() > self.max {
                return Taken::TooLong;
            }
            return Taken::Request(line);
        }
        self.scanned = self.input.len();
        if self.pending() > self.max {
            self.input = Vec::new();
            self.start = 0;
            self.scanned = 0;
            self.skipping = true;
            return Taken::Skipping;
        }
        Taken::Nothing
    }

    /// At end of stream: the last request, sent without its newline (`Request`), or
    /// `TooLong` for one being skipped, or `Nothing`.
    pub fn finish(&mut self) -> Taken {
        if std::mem::take(&mut self.skipping) {
            return Taken::TooLong;
        }
        if self.pending() == 0 {
            return Taken::Nothing;
        }
        let mut rest = std::mem::take(&mut self.input);
        rest.drain(..self.start);
        self.start = 0;
        self.scanned = 0;
        if rest.len() > self.max {
            return Taken::TooLong;
        }
        Taken::Request(rest)
    }
}

/// The framer against its model, for its property test and fuzz target.
#[doc(hidden)]
pub mod model {
    use super::{Framer, Taken};

    /// What a reader owes for `stream`: each line as a request (`None`: an error, the line
    /// is over `max`); an unterminated last line too.
    pub fn reference(stream: &[u8], max: usize) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        for p in parts.into_iter().chain((!last.is_empty()).then_some(last)) {
            out.push((p.len() <= max).then(|| p.to_vec()));
        }
        out
    }

    /// `stream` fed to a [`Framer`] in the pieces `cuts` make (never more at once than
    /// [`Framer::line_room`], as the server feeds it), taking what is whole after each.
    pub fn framed(stream: &[u8], cuts: &[usize], max: usize) -> Vec<Option<Vec<u8>>> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        let drain = |f: &mut Framer, out: &mut Vec<Option<Vec<u8>>>| {
            loop {
                match f.take() {
                    Taken::Request(r) => out.push(Some(r)),
                    Taken::TooLong => out.push(None),
                    Taken::Skipping => {}
                    Taken::Nothing => break,
                }
            }
        };
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        points.push(stream.len());
        for p in points {
            if p < at {
                continue;
            }
            // Fed as the server does: never past what tells a line too long.
            let mut piece = &stream[at..p];
            while !piece.is_empty() {
                let n = piece.len().min(f.line_room().max(1));
                if f.feed(&piece[..n]) {
                    out.push(None);
                }
                piece = &piece[n..];
                drain(&mut f, &mut out);
            }
            at = p;
        }
        match f.finish() {
            Taken::Request(r) => out.push(Some(r)),
            Taken::TooLong => out.push(None),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::model::{framed, reference};
    use proptest::prelude::*;

    #[test]
    fn lines_long_lines_and_the_unterminated_last_one() {
        let s = b"short\nthis-one-is-too-long\nok\n\nlast";
        assert_eq!(
            framed(s, &[3, 9, 30], 10),
            vec![
                Some(b"short".to_vec()),
                None,
                Some(b"ok".to_vec()),
                Some(vec![]),
                Some(b"last".to_vec())
            ]
        );
        assert_eq!(framed(b"0123456789abc", &[], 10), vec![None]);
    }

    proptest! {
        #[test]
        fn any_cutting_of_any_stream_frames_as_split_lines(
            stream in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'x'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in 0usize..20,
        ) {
            prop_assert_eq!(framed(&stream, &cuts, max), reference(&stream, max));
        }
    }
}
