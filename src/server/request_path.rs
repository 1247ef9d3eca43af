//! From the raw request path to an archive-relative path, refusing anything that is not a
//! plain sequence of ordinary names. This is the first of three fences: the ledger must also
//! know the exact path as archived, and the file is opened without following symlinks.

use percent_encoding::percent_decode_str;

use crate::archive::TEMP_DIR;

/// Decodes `/2026/03/42-clip%20one.mp4` into `2026/03/42-clip one.mp4`, or None when the path
/// is empty (no listings), has an empty segment (`//`), a `.`/`..` segment (raw or
/// percent-encoded), an encoded `/`, a backslash, NUL or another control character, invalid
/// UTF-8, or a segment starting with a dot (hidden files, and [`TEMP_DIR`]).
pub fn decode(raw: &str) -> Option<String> {
    let rest = raw.strip_prefix('/')?;
    if rest.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(rest.len());
    for (i, segment) in rest.split('/').enumerate() {
        let name = percent_decode_str(segment).decode_utf8().ok()?;
        if !acceptable(&name) {
            return None;
        }
        if i > 0 {
            out.push('/');
        }
        out.push_str(&name);
    }
    Some(out)
}

fn acceptable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name != TEMP_DIR
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_decode() {
        assert_eq!(decode("/2026/03/42-clip.mp4").as_deref(), Some("2026/03/42-clip.mp4"));
        assert_eq!(
            decode("/2026/03/42-%C3%BCber%20clip.mp4").as_deref(),
            Some("2026/03/42-über clip.mp4")
        );
        assert_eq!(
            decode("/a/b+c%2B.mp4").as_deref(),
            Some("a/b+c+.mp4"),
            "+ is literal in paths"
        );
        assert_eq!(decode("/a/100%25.mp4").as_deref(), Some("a/100%.mp4"));
        assert_eq!(
            decode("/a/x.mp4.").as_deref(),
            Some("a/x.mp4."),
            "a trailing dot is a name"
        );
    }

    #[test]
    fn hostile_paths_are_refused() {
        for raw in [
            "",
            "/",
            "relative",
            "//etc/passwd",
            "/2026//03/x.mp4",
            "/2026/03/",
            "/../etc/passwd",
            "/2026/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/%2e%2E/etc/passwd",
            "/.%2e/x",
            "/2026/./x.mp4",
            "/2026/%2e/x.mp4",
            "/%2Fetc%2Fpasswd",
            "/2026%2f03%2fx.mp4",
            "/2026\\03\\x.mp4",
            "/2026%5c03%5Cx.mp4",
            "/2026/03/x.mp4%00",
            "/2026/03/x%00.mp4",
            "/2026/03/x%0a.mp4",
            "/.r2-sync-tmp/partial",
            "/%2er2-sync-tmp/partial",
            "/2026/03/.hidden",
            "/2026/03/x%ff.mp4",
        ] {
            assert_eq!(decode(raw), None, "{raw:?}");
        }
    }
}
