//! RFC 9110 §13 conditional requests, evaluated in the order §13.2.2 prescribes, for GET and
//! HEAD (the only methods served): If-Match, If-Unmodified-Since, If-None-Match,
//! If-Modified-Since, then If-Range deciding whether a Range header is honoured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};

/// The file's validators: a strong ETag (quoted) and its modification time.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    pub etag: &'a str,
    pub last_modified: SystemTime,
}

/// The conditional headers of a request; a header that is not valid text counts as absent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

impl<'a> Conditions<'a> {
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            if_match: get(header::IF_MATCH),
            if_none_match: get(header::IF_NONE_MATCH),
            if_modified_since: get(header::IF_MODIFIED_SINCE),
            if_unmodified_since: get(header::IF_UNMODIFIED_SINCE),
            if_range: get(header::IF_RANGE),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve; honour the Range header only when `use_range`.
    Proceed { use_range: bool },
    /// 304: the client's copy is current.
    NotModified,
    /// 412: an If-Match / If-Unmodified-Since precondition does not hold.
    PreconditionFailed,
}

pub fn evaluate(c: &Conditions, v: &Validators) -> Decision {
    let modified = whole_seconds(v.last_modified);
    if let Some(list) = c.if_match {
        if !list_matches(list, v.etag, true) {
            return Decision::PreconditionFailed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_date) {
        if modified > date {
            return Decision::PreconditionFailed;
        }
    }
    if let Some(list) = c.if_none_match {
        if list_matches(list, v.etag, false) {
            return Decision::NotModified;
        }
    } else if let Some(date) = c.if_modified_since.and_then(parse_date) {
        if modified <= date {
            return Decision::NotModified;
        }
    }
    let use_range = c.if_range.is_none_or(|value| if_range_holds(value, v.etag, modified));
    Decision::Proceed { use_range }
}

/// An HTTP date as whole seconds since the epoch; None when unparseable (then ignored).
fn parse_date(raw: &str) -> Option<u64> {
    httpdate::parse_http_date(raw.trim()).ok().map(whole_seconds)
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// If-Range holds for an identical strong ETag, or a date equal to Last-Modified.
fn if_range_holds(value: &str, etag: &str, modified: u64) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag; // a weak tag never matches: If-Range needs strong comparison
    }
    parse_date(value) == Some(modified)
}

/// Whether an If-Match / If-None-Match list names `etag`: `*` matches anything; `strong`
/// comparison (If-Match) never matches a weak tag, weak comparison (If-None-Match) ignores `W/`.
fn list_matches(list: &str, etag: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    entity_tags(list).any(|(weak, tag)| tag == etag && !(strong && weak))
}

/// Parses `"a", W/"b"` into (weak, `"tag"`) pairs. An entity tag may itself contain commas,
/// so this scans quotes rather than splitting. Garbage ends the list.
fn entity_tags(list: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let weak = rest.starts_with("W/");
        let body = if weak { &rest[2..] } else { rest };
        let inner = body.strip_prefix('"')?;
        let close = inner.find('"')?;
        let tag = &body[..close + 2];
        rest = &inner[close + 1..];
        Some((weak, tag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc-1\"";
    const WHEN: &str = "Sun, 01 Mar 2026 12:00:00 GMT";
    const EARLIER: &str = "Sat, 28 Feb 2026 12:00:00 GMT";
    const LATER: &str = "Mon, 02 Mar 2026 12:00:00 GMT";

    fn validators() -> Validators<'static> {
        // Sub-second precision on disk must not defeat a date the client copied from us.
        let t = httpdate::parse_http_date(WHEN).unwrap() + Duration::from_millis(700);
        Validators {
            etag: ETAG,
            last_modified: t,
        }
    }

    fn eval(c: Conditions) -> Decision {
        evaluate(&c, &validators())
    }

    const GO: Decision = Decision::Proceed { use_range: true };
    const WHOLE: Decision = Decision::Proceed { use_range: false };

    #[test]
    fn if_none_match_gives_304_on_weak_match() {
        for list in ["\"abc-1\"", "W/\"abc-1\"", "\"x\", \"abc-1\"", "*", "\"a,b\",\"abc-1\""] {
            let c = Conditions {
                if_none_match: Some(list),
                ..Default::default()
            };
            assert_eq!(eval(c), Decision::NotModified, "{list}");
        }
        let c = Conditions {
            if_none_match: Some("\"other\""),
            if_modified_since: Some(LATER),
            ..Default::default()
        };
        assert_eq!(eval(c), GO, "If-None-Match present: If-Modified-Since is ignored");
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let at = |d| Conditions {
            if_modified_since: Some(d),
            ..Default::default()
        };
        assert_eq!(eval(at(WHEN)), Decision::NotModified);
        assert_eq!(eval(at(LATER)), Decision::NotModified);
        assert_eq!(eval(at(EARLIER)), GO);
        assert_eq!(eval(at("not a date")), GO);
    }

    #[test]
    fn if_match_and_if_unmodified_since_give_412() {
        let c = |m, u| Conditions {
            if_match: m,
            if_unmodified_since: u,
            ..Default::default()
        };
        assert_eq!(eval(c(Some("\"other\""), None)), Decision::PreconditionFailed);
        assert_eq!(
            eval(c(Some("W/\"abc-1\""), None)),
            Decision::PreconditionFailed,
            "strong"
        );
        assert_eq!(eval(c(Some("\"abc-1\""), None)), GO);
        assert_eq!(eval(c(Some("*"), None)), GO);
        assert_eq!(eval(c(None, Some(EARLIER))), Decision::PreconditionFailed);
        assert_eq!(eval(c(None, Some(WHEN))), GO);
        assert_eq!(eval(c(Some("\"abc-1\""), Some(EARLIER))), GO, "If-Match wins");
    }

    #[test]
    fn if_range_needs_a_strong_etag_or_the_exact_date() {
        let r = |v| Conditions {
            if_range: Some(v),
            ..Default::default()
        };
        assert_eq!(eval(r(ETAG)), GO);
        assert_eq!(eval(r(WHEN)), GO);
        assert_eq!(eval(r("\"other\"")), WHOLE);
        assert_eq!(eval(r("W/\"abc-1\"")), WHOLE);
        assert_eq!(eval(r(EARLIER)), WHOLE);
        assert_eq!(eval(r(LATER)), WHOLE, "only an exact date is safe");
        assert_eq!(eval(r("garbage")), WHOLE);
    }

    #[test]
    fn entity_tag_lists_parse() {
        let tags: Vec<_> = entity_tags(" \"a\" ,W/\"b,c\",\"\"").collect();
        assert_eq!(tags, [(false, "\"a\""), (true, "\"b,c\""), (false, "\"\"")]);
        assert_eq!(entity_tags("junk").count(), 0);
        assert_eq!(entity_tags("\"unterminated").count(), 0);
    }
}
