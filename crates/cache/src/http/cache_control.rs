//! A forgiving `Cache-Control` parser (RFC 9111 §5.2).
//!
//! It never fails and never panics: whatever the bytes, it yields the
//! directives it recognised. Directive names are matched without regard to
//! case, arguments may be tokens or quoted strings (a comma inside quotes
//! does not split), every field line of the header is read, and when a
//! directive appears more than once the most restrictive reading wins
//! (§4.2.1): the smallest `max-age`, and an argument that is not a valid
//! delta-seconds counts as 0 (the response is stale at once).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The largest delta-seconds a cache must understand; larger values are
/// read as this one (RFC 9111 §1.2.2).
pub(crate) const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// The directives the HTTP cache policy acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    /// Seconds; 0 when an argument was missing or malformed.
    pub(crate) max_age: Option<u64>,
    /// Seconds; 0 when an argument was missing or malformed.
    pub(crate) s_maxage: Option<u64>,
}

impl CacheControl {
    /// The directives of every `Cache-Control` field line in `headers`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            cc.parse_line(value.as_bytes());
        }
        cc
    }

    /// Adds the directives of one field line.
    pub(crate) fn parse_line(&mut self, mut line: &[u8]) {
        while !line.is_empty() {
            let (directive, rest) = split_directive(line);
            self.apply(directive);
            line = rest;
        }
    }

    fn apply(&mut self, directive: &[u8]) {
        let (name, arg) = match directive.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&directive[..i]), Some(trim(&directive[i + 1..]))),
            None => (trim(directive), None),
        };
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        if is("no-store") {
            self.no_store = true;
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("private") {
            self.private = true;
        } else if is("public") {
            self.public = true;
        } else if is("must-revalidate") {
            self.must_revalidate = true;
        } else if is("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if is("max-age") {
            self.max_age = Some(most_restrictive(self.max_age, delta_seconds(arg)));
        } else if is("s-maxage") {
            self.s_maxage = Some(most_restrictive(self.s_maxage, delta_seconds(arg)));
        }
    }
}

fn most_restrictive(old: Option<u64>, new: u64) -> u64 {
    old.map_or(new, |old| old.min(new))
}

/// The next directive of `line` and what follows its comma. A quoted
/// string (with `\` escapes) runs to its closing quote, or to the end of
/// the line when it has none.
fn split_directive(line: &[u8]) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in line.iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            return (&line[..i], &line[i + 1..]);
        }
    }
    (line, &[])
}

/// Reads a delta-seconds argument, token or quoted: `1*DIGIT`, capped at
/// [`DELTA_SECONDS_MAX`]. Anything else (missing, empty, signed, spaced,
/// not a number) reads as 0.
fn delta_seconds(arg: Option<&[u8]>) -> u64 {
    let Some(mut arg) = arg else { return 0 };
    if arg.len() >= 2 && arg[0] == b'"' && arg[arg.len() - 1] == b'"' {
        arg = &arg[1..arg.len() - 1];
    }
    parse_delta_seconds(arg).unwrap_or(0)
}

/// `1*DIGIT` as seconds, capped at [`DELTA_SECONDS_MAX`]; `None` for
/// anything else.
pub(crate) fn parse_delta_seconds(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 10 + u64::from(d - b'0');
        if n >= DELTA_SECONDS_MAX {
            return Some(DELTA_SECONDS_MAX);
        }
    }
    Some(n)
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(lines: &[&str]) -> CacheControl {
        let mut cc = CacheControl::default();
        for line in lines {
            cc.parse_line(line.as_bytes());
        }
        cc
    }

    #[test]
    fn flags_are_case_insensitive() {
        let cc = parse(&["No-Store, PRIVATE , public,Must-Revalidate,proxy-REVALIDATE, NO-CACHE"]);
        assert!(cc.no_store && cc.private && cc.public);
        assert!(cc.must_revalidate && cc.proxy_revalidate && cc.no_cache);
        assert_eq!(
            parse(&["max-age=5"]),
            CacheControl {
                max_age: Some(5),
                ..CacheControl::default()
            }
        );
    }

    #[test]
    fn ages_token_quoted_and_spaced() {
        assert_eq!(parse(&["max-age=60"]).max_age, Some(60));
        assert_eq!(parse(&["MAX-AGE=\"60\""]).max_age, Some(60));
        assert_eq!(parse(&["max-age = 60"]).max_age, Some(60));
        assert_eq!(parse(&["s-maxage=7"]).s_maxage, Some(7));
        assert_eq!(parse(&[""]).max_age, None);
    }

    #[test]
    fn garbage_ages_read_as_zero() {
        for bad in [
            "max-age",
            "max-age=",
            "max-age=-1",
            "max-age=1.5",
            "max-age=abc",
            "max-age=\"\"",
            "max-age=1 2",
            "max-age=\"5",
        ] {
            assert_eq!(parse(&[bad]).max_age, Some(0), "{bad}");
        }
    }

    #[test]
    fn huge_ages_are_capped() {
        assert_eq!(
            parse(&["max-age=99999999999999999999999999"]).max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(
            parse(&["max-age=2147483647"]).max_age,
            Some(DELTA_SECONDS_MAX - 1)
        );
    }

    #[test]
    fn duplicates_take_the_most_restrictive() {
        assert_eq!(parse(&["max-age=60, max-age=10"]).max_age, Some(10));
        assert_eq!(parse(&["max-age=10", "max-age=60"]).max_age, Some(10));
        assert_eq!(parse(&["max-age=60", "max-age=oops"]).max_age, Some(0));
        assert_eq!(parse(&["s-maxage=9, s-maxage=3"]).s_maxage, Some(3));
    }

    #[test]
    fn quoted_commas_do_not_split() {
        let cc = parse(&["private=\"set-cookie, no-store\", max-age=30"]);
        assert!(cc.private);
        assert!(!cc.no_store, "no-store was inside the quotes");
        assert_eq!(cc.max_age, Some(30));
        let cc = parse(&["x=\"a\\\",no-store\", public"]);
        assert!(
            !cc.no_store && cc.public,
            "escaped quote keeps the string open"
        );
        let cc = parse(&["x=\"unterminated, no-store"]);
        assert!(!cc.no_store);
    }

    #[test]
    fn unknown_and_empty_directives_are_ignored() {
        let cc = parse(&[",,, immutable, stale-while-revalidate=30, ,max-age=4,"]);
        assert_eq!(cc.max_age, Some(4));
        assert!(!cc.no_store);
    }

    #[test]
    fn reads_every_field_line() {
        let mut headers = HeaderMap::new();
        headers.append(CACHE_CONTROL, "max-age=60".parse().unwrap());
        headers.append(CACHE_CONTROL, "no-store".parse().unwrap());
        let cc = CacheControl::from_headers(&headers);
        assert!(cc.no_store);
        assert_eq!(cc.max_age, Some(60));
    }

    #[test]
    fn trims_spaces_and_tabs() {
        assert_eq!(trim(b" \t a b\t "), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    proptest! {
        #[test]
        fn never_panics_and_ages_stay_bounded(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut cc = CacheControl::default();
            cc.parse_line(&line);
            prop_assert!(cc.max_age.is_none_or(|a| a <= DELTA_SECONDS_MAX));
            prop_assert!(cc.s_maxage.is_none_or(|a| a <= DELTA_SECONDS_MAX));
        }

        #[test]
        fn any_valid_number_round_trips(n in 0u64..DELTA_SECONDS_MAX, quoted: bool, pad in "[ \t]{0,3}") {
            let arg = if quoted { format!("\"{n}\"") } else { n.to_string() };
            let cc = parse(&[&format!("public,{pad}max-age{pad}={pad}{arg}{pad}, no-transform")]);
            prop_assert_eq!(cc.max_age, Some(n));
            prop_assert!(cc.public);
        }
    }
}
