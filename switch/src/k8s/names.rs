//! Kubernetes' rules for names, label keys and values and port names (apimachinery's
//! `pkg/util/validation`), with the API server's messages, so that an object the API
//! server would refuse is refused here with the same words.
//!
//! Each check returns the first rule the text breaks (the API server lists every one).

/// The longest label value and the longest name part of a label key.
pub const LABEL_VALUE_MAX: usize = 63;
/// The longest DNS-1123 subdomain (a label key's prefix, most object names).
pub const SUBDOMAIN_MAX: usize = 253;
/// The longest DNS-1123 label (a namespace's name).
pub const LABEL_MAX: usize = 63;
/// The longest port name (IANA_SVC_NAME).
pub const PORT_NAME_MAX: usize = 15;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
                                  and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of \
                               alphanumeric characters, '-', '_' or '.', and must start and \
                               end with an alphanumeric character";
const DNS_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
                             alphanumeric characters or '-', and must start and end with an \
                             alphanumeric character";
const DNS_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
                                 alphanumeric characters, '-' or '.', and must start and end \
                                 with an alphanumeric character";

/// apimachinery's `RegexError`: the rule, examples, and the regular expression.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        examples.join(" or ")
    )
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: alphanumeric at both ends, `-`, `_`, `.`
/// inside.
fn qualified_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn dns_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(|c| alnum(c) || *c == b'-'),
        _ => false,
    }
}

/// A label key (and a selector's key): an optional DNS-1123 subdomain prefix and `/`,
/// then a name of at most 63 characters (`IsQualifiedName`).
pub fn qualified_name(s: &str) -> Result<(), String> {
    let name = match s.split('/').collect::<Vec<_>>()[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".into());
            }
            dns1123_subdomain(prefix).map_err(|m| format!("prefix part {m}"))?;
            name
        }
        _ => {
            return Err(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
        }
    };
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > LABEL_VALUE_MAX {
        return Err(format!("name part {}", max_len(LABEL_VALUE_MAX)));
    }
    if !qualified_chars(name) {
        return Err(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters shaped like a key's name part
/// (`IsValidLabelValue`).
pub fn label_value(s: &str) -> Result<(), String> {
    if s.len() > LABEL_VALUE_MAX {
        return Err(max_len(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !qualified_chars(s) {
        return Err(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    Ok(())
}

/// A DNS-1123 label: a namespace's name (`IsDNS1123Label`).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > LABEL_MAX {
        return Err(max_len(LABEL_MAX));
    }
    if !dns_label_chars(s) {
        return Err(regex_error(
            DNS_LABEL_MSG,
            DNS_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: most objects' names, a label key's prefix
/// (`IsDNS1123Subdomain`).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > SUBDOMAIN_MAX {
        return Err(max_len(SUBDOMAIN_MAX));
    }
    if !s.split('.').all(dns_label_chars) {
        return Err(regex_error(
            DNS_SUBDOMAIN_MSG,
            DNS_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    Ok(())
}

/// A port's name (IANA_SVC_NAME, `IsValidPortName`): 1 to 15 lower-case letters, digits
/// and `-`, at least one letter, no `--`, no `-` at either end.
pub fn port_name(s: &str) -> Result<(), String> {
    if s.len() > PORT_NAME_MAX {
        return Err(max_len(PORT_NAME_MAX));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        return Err("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not begin or end with a hyphen".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_as_the_api_server_takes_them() {
        for ok in [
            "app",
            "App.Name_x-1",
            "a",
            "9",
            "kubernetes.io/metadata.name",
            "example.com/MyName",
            "app.kubernetes.io/part-of",
            &"k".repeat(63),
            &format!("{}/x", "a".repeat(253)),
        ] {
            assert_eq!(qualified_name(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "name part must be non-empty"),
            ("/x", "prefix part must be non-empty"),
            ("a/", "name part must be non-empty"),
            ("a/b/c", "a qualified name must consist of"),
            ("-app", "name part must consist of"),
            ("app-", "name part must consist of"),
            ("app name", "name part must consist of"),
            (
                "Example.com/x",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "ex_ample.com/x",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            ("é", "name part must consist of"),
        ] {
            let e = qualified_name(bad).unwrap_err();
            assert!(e.starts_with(says), "{bad:?}: {e}");
        }
        assert_eq!(
            qualified_name(&"k".repeat(64)).unwrap_err(),
            "name part must be no more than 63 characters"
        );
        assert_eq!(
            qualified_name(&format!("{}/x", "a".repeat(254))).unwrap_err(),
            "prefix part must be no more than 253 characters"
        );
        // The message names the rule, the examples and the expression, as the API
        // server's does.
        assert_eq!(
            qualified_name("-x").unwrap_err(),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
             '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
    }

    #[test]
    fn label_values_as_the_api_server_takes_them() {
        for ok in ["", "x", "My_value.1-2", &"v".repeat(63)] {
            assert_eq!(label_value(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            label_value(&"v".repeat(64)).unwrap_err(),
            "must be no more than 63 characters"
        );
        for bad in ["-x", "x-", "a b", "a/b", "_", "ü"] {
            let e = label_value(bad).unwrap_err();
            assert!(
                e.starts_with("a valid label must be an empty string"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn dns_names() {
        assert_eq!(dns1123_label("kube-system"), Ok(()));
        assert_eq!(dns1123_label("0"), Ok(()));
        for bad in ["", "Kube", "a.b", "-a", "a-", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(dns1123_subdomain("web-0.shop"), Ok(()));
        for bad in ["", "a..b", ".a", "a.", "A", "a_b", &"a".repeat(254)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_names_follow_iana_svc_name() {
        for ok in ["http", "dns-tcp", "h2", "a", "x123456789abcde"] {
            assert_eq!(port_name(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "must contain only"),
            ("x123456789abcdef", "must be no more than 15"),
            ("Http", "must contain only"),
            ("a_b", "must contain only"),
            ("a--b", "consecutive hyphens"),
            ("80", "at least one letter"),
            ("-http", "begin or end"),
            ("http-", "begin or end"),
        ] {
            let e = port_name(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
