//! Response header values computed from untrusted text (the uploader's file name and MIME
//! type): everything here either validates or falls back, never passes raw input through.

use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::archive::safe_file_name;

/// RFC 8187 `attr-char`: what may stay unencoded in `filename*=UTF-8''...`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// A strong ETag from the file's size and modification time (nanoseconds): archived files
/// are written once and renamed into place, so both change whenever the content could.
pub fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// The stored MIME type when it is a well-formed, specific one; else a guess from the
/// file's extension; else `application/octet-stream`.
pub fn content_type(stored: Option<&str>, file_name: &str) -> String {
    let stored = stored
        .map(str::trim)
        .filter(|s| s.parse::<mime_guess::mime::Mime>().is_ok() && !s.eq_ignore_ascii_case("application/octet-stream"))
        .filter(|s| s.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    match stored {
        Some(s) => s.to_owned(),
        None => mime_guess::from_path(file_name)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
    }
}

/// Media a browser can show safely in place; anything else (HTML, SVG, scripts) downloads,
/// so an uploaded page can never run on the tunnel's origin.
fn shows_inline(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    (ct.starts_with("video/") || ct.starts_with("audio/") || ct.starts_with("image/")) && !ct.contains("svg")
}

/// `Content-Disposition` (RFC 6266): an ASCII fallback `filename="..."` for old clients and
/// the exact UTF-8 name in `filename*`. `original` is the uploader's name; `fallback` (the
/// archived file's name) stands in when it is empty.
pub fn content_disposition(content_type: &str, original: Option<&str>, fallback: &str) -> String {
    let name = safe_file_name(original.unwrap_or(""), fallback);
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let kind = if shows_inline(content_type) {
        "inline"
    } else {
        "attachment"
    };
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(&name, ATTR_CHAR)
    )
}

/// An HTTP date (`Last-Modified`).
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn etags_are_strong_and_change_with_size_or_time() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let a = etag(10, t);
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        assert_ne!(a, etag(11, t));
        assert_ne!(a, etag(10, t + Duration::from_nanos(1)));
    }

    #[test]
    fn content_type_prefers_a_valid_stored_type() {
        assert_eq!(content_type(Some("video/mp4"), "x.mkv"), "video/mp4");
        assert_eq!(
            content_type(Some("video/webm; codecs=vp9"), "x"),
            "video/webm; codecs=vp9"
        );
        assert_eq!(content_type(Some("application/octet-stream"), "a.mp4"), "video/mp4");
        assert_eq!(content_type(Some("not a type"), "a.mkv"), "video/x-matroska");
        assert_eq!(content_type(Some("text/html\r\nX-Evil: 1"), "a.mp4"), "video/mp4");
        assert_eq!(content_type(None, "a.unknownext"), "application/octet-stream");
        assert_eq!(content_type(Some(""), "a.mp3"), "audio/mpeg");
    }

    #[test]
    fn disposition_encodes_the_name_safely() {
        let cd = content_disposition("video/mp4", Some("Ünïcødé \"clip\"; 1.mp4"), "1-x.mp4");
        assert_eq!(
            cd,
            "inline; filename=\"_n_c_d_ _clip_; 1.mp4\"; \
             filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20_clip_%3B%201.mp4"
        );
        let cd = content_disposition("text/html", Some("../../evil\r\n.html"), "1-x.html");
        assert!(cd.starts_with("attachment; filename=\"evil__.html\""), "{cd}");
        assert!(!cd.contains('\r') && !cd.contains('\n') && !cd.contains('/'));
        assert!(content_disposition("image/svg+xml", Some("a.svg"), "f").starts_with("attachment"));
        let cd = content_disposition("video/mp4", None, "42-clip.mp4");
        assert!(cd.contains("filename=\"42-clip.mp4\""), "{cd}");
        assert!(http::HeaderValue::from_str(&cd).is_ok());
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784111777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
