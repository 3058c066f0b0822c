//! Directory listings (`listing on`): an HTML page of a directory's entries.
//!
//! Names are HTML-escaped for display and percent-encoded for links, so a file called
//! `<script>` or `a b#c` shows as itself and links to itself. Entries are sorted by name
//! (byte order, directories marked with a trailing `/`); hidden entries (starting with
//! `.`) are left out, as nginx's autoindex does.

use crate::time::UnixTime;

/// One directory entry as the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirEntry {
    /// The file name (bytes; not necessarily UTF-8).
    pub name: Vec<u8>,
    /// True for a directory.
    pub is_dir: bool,
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: UnixTime,
}

/// Escapes text for HTML element content and attribute values.
#[must_use]
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const LINK: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Renders the listing page for the directory at `url_path` (which ends with `/`).
#[must_use]
pub fn render(url_path: &[u8], entries: &[DirEntry]) -> String {
    let title = html_escape(&String::from_utf8_lossy(url_path));
    let mut sorted: Vec<&DirEntry> = entries
        .iter()
        .filter(|e| !e.name.starts_with(b"."))
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if url_path != b"/" {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in sorted {
        let slash = if e.is_dir { "/" } else { "" };
        let href = percent_encoding::percent_encode(&e.name, LINK).to_string();
        let shown = html_escape(&String::from_utf8_lossy(&e.name));
        let size = if e.is_dir {
            "-".to_string()
        } else {
            e.len.to_string()
        };
        page.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{shown}{slash}</a></td><td>{size}</td><td>{}</td></tr>\n",
            e.mtime.http_date()
        ));
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &[u8], is_dir: bool) -> DirEntry {
        DirEntry {
            name: name.to_vec(),
            is_dir,
            len: 12,
            mtime: UnixTime(0),
        }
    }

    #[test]
    fn escapes_sorts_and_hides() {
        let page = render(
            b"/d/",
            &[
                e(b"z.txt", false),
                e(b"<b>&\"", false),
                e(b"sub dir", true),
                e(b".hidden", false),
            ],
        );
        assert!(
            page.contains("<a href=\"%3Cb%3E%26%22\">&lt;b&gt;&amp;&quot;</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"sub%20dir/\">sub dir/</a></td><td>-</td>"),
            "{page}"
        );
        assert!(!page.contains("hidden"));
        let (a, b, c) = (
            page.find("%3Cb").unwrap(),
            page.find("sub%20dir").unwrap(),
            page.find("z.txt").unwrap(),
        );
        assert!(a < b && b < c, "sorted by name");
        assert!(page.contains("href=\"../\""));
        assert!(!render(b"/", &[]).contains("../"));
        assert!(page.contains("<td>12</td><td>Thu, 01 Jan 1970 00:00:00 GMT</td>"));
    }
}
