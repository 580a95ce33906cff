//! Splitting flow text into `key`, `key=value`, `key:value` and `key(value)` tokens, the way
//! Open vSwitch's `ofputil_parse_key_value()` does, but with byte offsets kept for errors and
//! with double-quoted strings (port names) treated as opaque.

use super::ParseError;

/// What separated a token's key from its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delim {
    /// A bare key (`tcp`, `dec_ttl`).
    None,
    /// `key=value`.
    Eq,
    /// `key:value`.
    Colon,
    /// `key(value)`; the value is what is inside the parentheses.
    Paren,
}

/// One token. Offsets are absolute byte offsets into the text being parsed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'a> {
    pub key: &'a str,
    pub key_at: usize,
    pub delim: Delim,
    pub value: &'a str,
    pub value_at: usize,
}

impl Token<'_> {
    pub fn has_value(&self) -> bool {
        self.delim != Delim::None
    }
}

/// Separators between tokens.
fn is_sep(c: u8) -> bool {
    matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n')
}

/// A cursor over `src`, which starts at byte `base` of the whole input.
#[derive(Clone, Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    base: usize,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, base: usize) -> Lexer<'a> {
        Lexer { src, base, pos: 0 }
    }

    /// The text after the current position, and its absolute offset.
    pub fn rest(&self) -> (&'a str, usize) {
        (&self.src[self.pos..], self.base + self.pos)
    }

    /// Move to the end: the caller consumed [`Lexer::rest`] itself.
    pub fn finish(&mut self) {
        self.pos = self.src.len();
    }

    /// The next token, `None` at the end.
    pub fn next_token(&mut self) -> Option<Result<Token<'a>, ParseError>> {
        let b = self.src.as_bytes();
        while self.pos < b.len() && is_sep(b[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        Some(self.token())
    }

    fn token(&mut self) -> Result<Token<'a>, ParseError> {
        let b = self.src.as_bytes();
        let key_start = self.pos;
        if b[self.pos] == b'"' {
            self.pos = skip_quoted(self.src, self.pos, self.base)?;
        } else {
            while self.pos < b.len()
                && !is_sep(b[self.pos])
                && !matches!(b[self.pos], b':' | b'=' | b'(')
            {
                if b[self.pos] == b'"' {
                    self.pos = skip_quoted(self.src, self.pos, self.base)?;
                } else {
                    self.pos += 1;
                }
            }
        }
        let key = &self.src[key_start..self.pos];
        let key_at = self.base + key_start;
        if key.is_empty() {
            return Err(ParseError::new(
                key_at,
                format!("expected a name before '{}'", b[self.pos] as char),
            ));
        }
        let delim = match b.get(self.pos) {
            Some(b'=') => Delim::Eq,
            Some(b':') => Delim::Colon,
            Some(b'(') => Delim::Paren,
            _ => {
                return Ok(Token {
                    key,
                    key_at,
                    delim: Delim::None,
                    value: "",
                    value_at: self.base + self.pos,
                });
            }
        };
        let open = self.pos;
        self.pos += 1;
        let value_start = self.pos;
        if delim == Delim::Paren {
            let close = find_close(self.src, open, self.base)?;
            self.pos = close + 1;
            return Ok(Token {
                key,
                key_at,
                delim,
                value: &self.src[value_start..close],
                value_at: self.base + value_start,
            });
        }
        while self.pos < b.len() && !is_sep(b[self.pos]) {
            match b[self.pos] {
                b'"' => self.pos = skip_quoted(self.src, self.pos, self.base)?,
                b'(' => self.pos = find_close(self.src, self.pos, self.base)? + 1,
                _ => self.pos += 1,
            }
        }
        Ok(Token {
            key,
            key_at,
            delim,
            value: &self.src[value_start..self.pos],
            value_at: self.base + value_start,
        })
    }
}

/// Given `s[at] == '"'`, the index just past the closing quote.
fn skip_quoted(s: &str, at: usize, base: usize) -> Result<usize, ParseError> {
    let b = s.as_bytes();
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(ParseError::new(
        base + at,
        "missing closing '\"' for this quoted name",
    ))
}

/// Given `s[open] == '('`, the index of the matching `)`.
fn find_close(s: &str, open: usize, base: usize) -> Result<usize, ParseError> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_quoted(s, i, base)?;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(ParseError::new(
        base + open,
        "missing ')' to close this '('",
    ))
}

/// Split `s` (at absolute offset `at`) on the first `->`: the parts and the offset of the
/// second one.
pub(crate) fn split_arrow(s: &str, at: usize) -> Option<(&str, &str, usize)> {
    let i = s.find("->")?;
    Some((&s[..i], &s[i + 2..], at + i + 2))
}

/// Trim trailing separators from `s`.
pub(crate) fn trim_end_seps(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii() && is_sep(c as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Vec<(String, Delim, String, usize, usize)> {
        let mut l = Lexer::new(s, 0);
        let mut out = Vec::new();
        while let Some(t) = l.next_token() {
            let t = t.unwrap();
            out.push((
                t.key.to_string(),
                t.delim,
                t.value.to_string(),
                t.key_at,
                t.value_at,
            ));
        }
        out
    }

    #[test]
    fn keys_values_and_offsets() {
        let t = lex("tcp, tp_dst=80 ,output:1");
        assert_eq!(t[0], ("tcp".into(), Delim::None, "".into(), 0, 3));
        assert_eq!(t[1], ("tp_dst".into(), Delim::Eq, "80".into(), 5, 12));
        assert_eq!(t[2], ("output".into(), Delim::Colon, "1".into(), 16, 23));
    }

    #[test]
    fn nested_parens_and_quotes() {
        let t = lex(r#"ct(commit,nat(src=1.1.1.1)),output:"a,b c",x"#);
        assert_eq!(t[0].0, "ct");
        assert_eq!(t[0].1, Delim::Paren);
        assert_eq!(t[0].2, "commit,nat(src=1.1.1.1)");
        assert_eq!(t[1].2, r#""a,b c""#);
        assert_eq!(t[2].0, "x");
    }

    #[test]
    fn unbalanced() {
        let mut l = Lexer::new("ct(commit", 10);
        let e = l.next_token().unwrap().unwrap_err();
        assert_eq!(e.offset, 12);
        let mut l = Lexer::new(r#"output:"abc"#, 0);
        assert_eq!(l.next_token().unwrap().unwrap_err().offset, 7);
    }
}
