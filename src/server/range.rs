//! RFC 9110 §14 byte ranges: what a `Range` header asks of a file of a given length.
//!
//! Only the answer matters to the caller: the whole file (200), one slice of it (206) or
//! nothing (416). Several ranges are coalesced; when they stay disjoint the header is ignored
//! and the whole file is sent, which RFC 9110 allows and which no player or download manager
//! we know of minds (they ask for one range at a time).

/// An inclusive byte range inside a file, always non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// The `Content-Range` value for this slice of a `total`-byte file.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable Range header: send the whole file (200).
    Full,
    /// One slice (206 with Content-Range).
    Partial(ByteRange),
    /// Well-formed, but nothing in it overlaps the file (416 with `bytes */len`).
    Unsatisfiable,
}

/// More range specs than this and the header is ignored: a crafted header costs us nothing.
const MAX_SPECS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` or `a-`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Evaluates a `Range` header value against a file of `len` bytes. A malformed header or a
/// unit other than `bytes` is ignored (RFC 9110 §14.2: the server MAY ignore it).
pub fn evaluate(header: &str, len: u64) -> RangeAnswer {
    let Some(specs) = parse(header) else {
        return RangeAnswer::Full;
    };
    let mut ranges: Vec<ByteRange> = specs.into_iter().filter_map(|s| resolve(s, len)).collect();
    if ranges.is_empty() {
        return RangeAnswer::Unsatisfiable;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged = ranges[0];
    for r in &ranges[1..] {
        // Overlapping or adjacent ranges join; a gap means several parts.
        if r.start > merged.end.saturating_add(1) {
            return RangeAnswer::Full;
        }
        merged.end = merged.end.max(r.end);
    }
    RangeAnswer::Partial(merged)
}

fn parse(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for part in set.split(',').map(str::trim) {
        if part.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        if specs.len() == MAX_SPECS {
            return None;
        }
        let (first, last) = part.split_once('-')?;
        let spec = match (first.is_empty(), last.is_empty()) {
            (true, true) => return None,
            (true, false) => Spec::Suffix(number(last)?),
            (false, true) => Spec::From(number(first)?, None),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                if b < a {
                    return None; // RFC 9110: invalid, so the whole header is ignored
                }
                Spec::From(a, Some(b))
            }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// Digits only; a value too large for u64 saturates (it is past any file's end anyway).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

fn resolve(spec: Spec, len: u64) -> Option<ByteRange> {
    match spec {
        Spec::From(start, _) if start >= len => None,
        Spec::From(start, end) => Some(ByteRange {
            start,
            end: end.map_or(len - 1, |e| e.min(len - 1)),
        }),
        Spec::Suffix(0) => None,
        Spec::Suffix(_) if len == 0 => None,
        Spec::Suffix(n) => Some(ByteRange {
            start: len - n.min(len),
            end: len - 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    fn part(start: u64, end: u64) -> RangeAnswer {
        Partial(ByteRange { start, end })
    }

    #[test]
    fn single_range_forms() {
        assert_eq!(evaluate("bytes=0-99", 1000), part(0, 99));
        assert_eq!(evaluate("bytes=500-", 1000), part(500, 999));
        assert_eq!(evaluate("bytes=-100", 1000), part(900, 999));
        assert_eq!(evaluate("bytes=990-2000", 1000), part(990, 999), "end is clamped");
        assert_eq!(
            evaluate("bytes=-5000", 1000),
            part(0, 999),
            "suffix longer than the file"
        );
        assert_eq!(evaluate("BYTES = 0-0", 1000), part(0, 0), "unit is case-insensitive");
        assert_eq!(evaluate("bytes=999-999", 1000), part(999, 999));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(evaluate("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(evaluate("bytes=5000-6000", 1000), Unsatisfiable);
        assert_eq!(evaluate("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(evaluate("bytes=0-", 0), Unsatisfiable, "an empty file has no bytes");
        assert_eq!(evaluate("bytes=-1", 0), Unsatisfiable);
        assert_eq!(evaluate("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }

    #[test]
    fn malformed_or_foreign_headers_are_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=1-2-3",
            "bytes= 1 - 2",
            "bytes=+1-2",
            "items=0-1",
            "bytes=0-1,x",
        ] {
            assert_eq!(evaluate(header, 1000), Full, "{header:?}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_SPECS + 1].join(","));
        assert_eq!(evaluate(&many, 1000), Full);
    }

    #[test]
    fn several_ranges_coalesce_or_fall_back_to_the_whole_file() {
        assert_eq!(evaluate("bytes=0-9, 10-19", 100), part(0, 19), "adjacent");
        assert_eq!(evaluate("bytes=50-60,0-55", 100), part(0, 60), "overlapping, unordered");
        assert_eq!(evaluate("bytes=0-0,-1", 100), Full, "disjoint");
        assert_eq!(evaluate("bytes=0-1,,", 100), part(0, 1), "empty elements");
        assert_eq!(
            evaluate("bytes=200-300,0-9", 100),
            part(0, 9),
            "unsatisfiable parts dropped"
        );
    }

    #[test]
    fn content_range_values() {
        let r = ByteRange { start: 0, end: 99 };
        assert_eq!(r.len(), 100);
        assert_eq!(r.content_range(1000), "bytes 0-99/1000");
    }
}
