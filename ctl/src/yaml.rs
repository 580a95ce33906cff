//! JSON values written as YAML, the way `kubectl get -o yaml` prints them (go-yaml v2 by
//! way of sigs.k8s.io/yaml): block style, two spaces a level, a list's `- ` at its parent
//! key's indentation, keys in the map's order (sorted, as kubectl sorts them).
//!
//! A string is written plain only when every YAML reader takes it back as that string:
//! YAML 1.2 (core and JSON schemas) and YAML 1.1 (kubectl's go-yaml, which reads `yes`,
//! `0644`, `1_000`, `1:20` and dates as other things) alike. Otherwise, as go-yaml does:
//! double quotes for what would read as another type, a literal block (`|`) for text of
//! several lines, single quotes for what YAML's syntax would misread (`*`, `a: b`,
//! leading spaces), double quotes with escapes for control characters.

use serde_json::{Map, Value};

/// `v` as a YAML document, ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block_map(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => block_seq(a, 0, false, &mut out),
        // A document of one scalar: never a block at column 0, where `---` would end it.
        Value::String(s) => {
            match scalar_style(s) {
                Style::Plain => out.push_str(s),
                _ => double(s, &mut out),
            }
            out.push('\n');
        }
        other => {
            scalar(other, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

/// What precedes a value: a mapping key (`key:`) or a sequence's dash (`-`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Key,
    Dash,
}

/// Entries of a mapping at column `col`; the first goes on the current line when `inline`
/// (after a `- `).
fn block_map(m: &Map<String, Value>, col: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline {
            indent(col, out);
        }
        let mut key = String::new();
        match key_style(k) {
            Style::Plain => key.push_str(k),
            Style::Single => single(k, &mut key),
            Style::Double | Style::Literal => double(k, &mut key),
        }
        // An implicit key is at most 1024 characters long (YAML 1.2, 7.4.2): longer ones
        // take the explicit form, `? key` then `: value`.
        if key.chars().count() > 1024 {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            indent(col, out);
        } else {
            out.push_str(&key);
        }
        out.push(':');
        value(v, col, After::Key, out);
    }
}

/// Items of a sequence whose dashes are at column `col`; the first goes on the current line
/// when `inline` (after another `- `).
fn block_seq(a: &[Value], col: usize, inline: bool, out: &mut String) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 || !inline {
            indent(col, out);
        }
        out.push('-');
        value(v, col, After::Dash, out);
    }
}

/// The value after a key or a dash at column `col`, through the end of its last line.
fn value(v: &Value, col: usize, after: After, out: &mut String) {
    match (v, after) {
        (Value::Object(m), After::Key) if !m.is_empty() => {
            out.push('\n');
            block_map(m, col + 2, false, out);
        }
        (Value::Object(m), After::Dash) if !m.is_empty() => {
            out.push(' ');
            block_map(m, col + 2, true, out);
        }
        // kubectl's look: a list under a key starts at the key's column.
        (Value::Array(a), After::Key) if !a.is_empty() => {
            out.push('\n');
            block_seq(a, col, false, out);
        }
        (Value::Array(a), After::Dash) if !a.is_empty() => {
            out.push(' ');
            block_seq(a, col + 2, true, out);
        }
        _ => {
            out.push(' ');
            scalar(v, col, out);
            out.push('\n');
        }
    }
}

/// A scalar (or an empty collection) after a key or a dash at column `col`, without its
/// final newline.
fn scalar(v: &Value, col: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        Value::String(s) => match scalar_style(s) {
            Style::Plain => out.push_str(s),
            Style::Single => single(s, out),
            Style::Double => double(s, out),
            Style::Literal => literal(s, col, out),
        },
    }
}

fn indent(col: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', col));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// How a string value is written: go-yaml's choice (libyaml's emitter rules).
fn scalar_style(s: &str) -> Style {
    if reads_as_other_type(s) {
        return Style::Double;
    }
    if s.contains('\n') {
        return if literal_allowed(s) {
            Style::Literal
        } else {
            Style::Double
        };
    }
    if !s.chars().all(printable) {
        return Style::Double;
    }
    if plain_allowed(s) {
        Style::Plain
    } else {
        Style::Single
    }
}

/// How a key is written: as a value, but always on one line.
fn key_style(s: &str) -> Style {
    match scalar_style(s) {
        Style::Literal => Style::Double,
        other => other,
    }
}

/// Characters a YAML stream may hold as they are (libyaml's `IS_PRINTABLE`), less those
/// YAML 1.1 reads as line breaks (NEL, LS, PS) and the byte order mark; tab is left out
/// as libyaml leaves it out, so that no reader folds or strips it.
fn printable(c: char) -> bool {
    matches!(c,
        '\u{20}'..='\u{7e}'
        | '\u{a0}'..='\u{2027}'
        | '\u{202a}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fefe}'
        | '\u{ff00}'..='\u{fffd}'
        | '\u{10000}'..='\u{10ffff}')
}

/// Whether a plain scalar reads as anything but this string, in YAML 1.2 (core schema) or
/// YAML 1.1 (go-yaml v2, which kubectl uses): null, a boolean, a number, a date, or one of
/// 1.1's special keys.
fn reads_as_other_type(s: &str) -> bool {
    const WORDS: [&str; 32] = [
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", "<<", "=",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // Numbers (and dates) start with a digit, a sign or a dot; YAML 1.1 allows `_`
    // anywhere after that.
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return false;
    }
    let digits: String = unsigned.chars().filter(|&c| c != '_').collect();
    is_int(&digits) || is_float(&digits) || is_sexagesimal(unsigned) || is_date(s)
}

/// `0x1F`, `0o17`, `0b101`, `0644`, `12`: every base YAML 1.1 or 1.2 (or Go's ParseInt)
/// reads.
fn is_int(s: &str) -> bool {
    let prefixed = |p: &str| {
        s.get(..2)
            .filter(|h| h.eq_ignore_ascii_case(p))
            .map(|_| &s[2..])
    };
    let (radix, digits) = if let Some(d) = prefixed("0x") {
        (16, d)
    } else if let Some(d) = prefixed("0o") {
        (8, d)
    } else if let Some(d) = prefixed("0b") {
        (2, d)
    } else {
        (10, s)
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

/// `[0-9]+(\.[0-9]*)?|\.[0-9]+`, then an optional exponent whose sign is optional (YAML
/// 1.2 and Go) or required (1.1).
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let whole = digits(&mut i);
    let mut fraction = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        fraction = digits(&mut i);
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// YAML 1.1's base 60 numbers: `1:20`, `190:20:30.15` (go-yaml quotes them too).
fn is_sexagesimal(s: &str) -> bool {
    let (body, fraction) = match s.split_once('.') {
        Some((b, f)) => (b, Some(f)),
        None => (s, None),
    };
    let mut parts = body.split(':');
    let first = parts.next().unwrap_or_default();
    let digit_or_underscore = |p: &str| p.chars().all(|c| c.is_ascii_digit() || c == '_');
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && first.starts_with(|c: char| c.is_ascii_digit())
        && digit_or_underscore(first)
        && rest
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
        && fraction.is_none_or(digit_or_underscore)
}

/// A YAML 1.1 timestamp begins `YYYY-M-D` (kubectl quotes `creationTimestamp` for this).
fn is_date(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day = rest
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest, |end| &rest[..end]);
    let numeric = |p: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit())
    };
    numeric(y, 4..=4) && numeric(m, 1..=2) && numeric(day, 1..=2)
}

/// Whether YAML's syntax reads `s` (one line, printable, not another type) back as it is
/// when written plain, as a block value or key.
fn plain_allowed(s: &str) -> bool {
    const INDICATORS: &[char] = &[
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
        '`',
    ];
    !s.starts_with(INDICATORS)
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.starts_with("...")
}

/// A literal block keeps every character of text made of printable lines, as long as no
/// line ends in a space (which libyaml, and so kubectl, will not write that way).
fn literal_allowed(s: &str) -> bool {
    s.chars().all(|c| c == '\n' || printable(c)) && !s.contains(" \n") && !s.ends_with(' ')
}

/// `'...'`: quotes doubled, nothing else escaped.
fn single(s: &str, out: &mut String) {
    out.push('\'');
    out.push_str(&s.replace('\'', "''"));
    out.push('\'');
}

/// `"..."` with YAML's escapes, which every reader (1.1 and 1.2) understands.
fn double(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if printable(c) => out.push(c),
            c if u32::from(c) <= 0xff => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
}

/// A literal block for a value after a key or dash at column `col`: its lines at `col + 2`,
/// with an indentation indicator when the text starts with a space or an empty line (the
/// reader would otherwise guess the indentation from it), and the chomping indicator that
/// keeps exactly the text's final line breaks.
fn literal(s: &str, col: usize, out: &mut String) {
    out.push('|');
    if s.starts_with([' ', '\n']) {
        out.push('2');
    }
    let body = match s.strip_suffix('\n') {
        None => {
            out.push('-');
            s
        }
        Some(rest) if rest.is_empty() || rest.ends_with('\n') => {
            out.push('+');
            rest
        }
        Some(rest) => rest,
    };
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(col + 2, out);
            out.push_str(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// `v` read back by the project's own manifest reader, under a key of an object that
    /// has the `kind` and `apiVersion` it wants.
    fn read_back(v: &Value) -> Result<Value, String> {
        let doc = json!({"apiVersion": "v1", "kind": "Wrapper", "value": v});
        let text = to_yaml(&doc);
        let objects = vswitch_proto::k8s::load_documents("-", &text)
            .map_err(|e| format!("{e}\n--- text:\n{text}"))?;
        match objects.as_slice() {
            [one] => Ok(one.object["value"].clone()),
            other => Err(format!("{} objects\n--- text:\n{text}", other.len())),
        }
    }

    /// What the reader makes of a number: a whole float (below 2^63) becomes an integer,
    /// as kubectl's YAML-to-JSON step does.
    fn normalized(v: &Value) -> Value {
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 => {
                    json!(f as i64)
                }
                _ => v.clone(),
            },
            Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), normalized(v))).collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn looks_like_kubectl() {
        let v = json!({
            "apiVersion": "v1",
            "items": [
                {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": "n1", "creationTimestamp": "2024-01-02T03:04:05Z",
                              "labels": {}},
                 "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
                 "status": {"addresses": [{"address": "192.168.56.11", "type": "InternalIP"}]}}
            ],
            "kind": "List",
            "metadata": {"resourceVersion": ""}
        });
        assert_eq!(
            to_yaml(&v),
            "\
apiVersion: v1
items:
- apiVersion: v1
  kind: Node
  metadata:
    creationTimestamp: \"2024-01-02T03:04:05Z\"
    labels: {}
    name: n1
  spec:
    podCIDR: 10.244.1.0/24
    podCIDRs:
    - 10.244.1.0/24
  status:
    addresses:
    - address: 192.168.56.11
      type: InternalIP
kind: List
metadata:
  resourceVersion: \"\"
"
        );
    }

    #[test]
    fn strings_quoted_as_go_yaml_quotes_them() {
        for (s, written) in [
            ("web", "web"),
            ("a b", "a b"),
            ("10.244.1.0/24", "10.244.1.0/24"),
            ("fd00::1", "fd00::1"),
            ("a:b", "a:b"),
            ("a#b", "a#b"),
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("~", "\"~\""),
            ("null", "\"null\""),
            ("0x10", "\"0x10\""),
            ("0o7", "\"0o7\""),
            ("0644", "\"0644\""),
            ("1e3", "\"1e3\""),
            (".5", "\".5\""),
            ("-1.5", "\"-1.5\""),
            ("1_000", "\"1_000\""),
            ("1:20", "\"1:20\""),
            ("-.inf", "\"-.inf\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("<<", "\"<<\""),
            ("*", "'*'"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("%x", "'%x'"),
            ("tab\there", "\"tab\\there\""),
            ("bell\u{7}", "\"bell\\x07\""),
            ("nel\u{85}", "\"nel\\x85\""),
            ("bom\u{feff}", "\"bom\\uFEFF\""),
            ("two\nlines", "|-\n    two\n    lines"),
            ("ends\n", "|\n    ends"),
            ("ends\n\n", "|+\n    ends\n"),
            (" indented\nx", "|2-\n     indented\n    x"),
            ("space \nbreak", "\"space \\nbreak\""),
        ] {
            let mut out = String::new();
            scalar(&Value::String(s.into()), 2, &mut out);
            assert_eq!(out, written, "{s:?}");
        }
    }

    #[test]
    fn collections_nest_as_kubectl_nests_them() {
        let v = json!({"a": [[1, 2], [], {}, {"b": [3], "c": {}}], "d": {"e": {"f": null}}});
        assert_eq!(
            to_yaml(&v),
            "\
a:
- - 1
  - 2
- []
- {}
- b:
  - 3
  c: {}
d:
  e:
    f: null
"
        );
        assert_eq!(to_yaml(&json!({})), "{}\n");
        assert_eq!(to_yaml(&json!("yes")), "\"yes\"\n");
    }

    #[test]
    fn long_keys_take_the_explicit_form() {
        let key = "k".repeat(1100);
        for v in [
            json!(1),
            json!({"a": [1, {"b": 2}]}),
            json!([1, [2]]),
            json!("x\ny"),
        ] {
            let value = json!({ key.clone(): v.clone(), "after": true });
            assert_eq!(read_back(&value), Ok(value), "{v}");
        }
    }

    /// Strings a YAML writer can get wrong, and pieces to build more from.
    const NASTY: &[&str] = &[
        "",
        " ",
        "  ",
        "true",
        "True",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "Y",
        "N",
        "null",
        "Null",
        "~",
        "0",
        "-0",
        "00",
        "08",
        "0x10",
        "0X1f",
        "0o7",
        "0b11",
        "1e3",
        "1E-3",
        ".5",
        "-.5",
        "+1",
        "1.",
        "1_000",
        "1:20",
        "1:20:30.5",
        ".inf",
        "-.Inf",
        ".nan",
        "2024-01-02",
        "2024-1-2 10:00:00",
        "12:30",
        "<<",
        "=",
        "-",
        "--",
        "---",
        "...",
        "- a",
        "? a",
        ":",
        "a:",
        "a: b",
        "a:b",
        "#",
        "a #b",
        "a#b",
        "&a",
        "*a",
        "!a",
        "!!str",
        "|",
        ">",
        "'",
        "\"",
        "%",
        "@",
        "`",
        ",",
        "[",
        "]",
        "{",
        "}",
        "{}",
        "[]",
        "\n",
        "\n\n",
        "a\n",
        "a\n\n",
        "\na",
        " a",
        "a ",
        "a \nb",
        "a\n b",
        "a\n\n b\n",
        "\t",
        "a\tb",
        "\r",
        "\r\n",
        "\0",
        "\u{7f}",
        "\u{85}",
        "\u{a0}",
        "\u{2028}",
        "\u{2029}",
        "\u{feff}",
        "\u{fffe}",
        "\u{1f600}",
        "é",
        "\\",
        "\\n",
        "\"\\\"",
        "''",
        "a'b",
        "k8s.io/name",
        "10.0.0.1",
        "fd00::1",
        "1.2.3",
    ];

    fn nasty_string() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(NASTY).prop_map(str::to_string);
        prop_oneof![
            3 => piece.clone(),
            2 => prop::collection::vec(piece, 1..4).prop_map(|p| p.concat()),
            2 => any::<String>(),
            1 => "[ -~\n]{0,20}",
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON holds finite numbers", |f| f.is_finite())
                .prop_map(Value::from),
            (-1000i32..1000, 0u32..4)
                .prop_map(|(n, e)| Value::from(f64::from(n) / f64::from(10u32.pow(e)))),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            nasty_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(nasty_string(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn reads_back_as_written(v in json_value()) {
            prop_assert_eq!(read_back(&v), Ok(normalized(&v)));
        }
    }
}
