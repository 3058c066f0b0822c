//! Splitting `weir.conf` lines into words (DESIGN.md §3).
//!
//! One directive per line. Blanks (space, tab) separate words; `#` outside quotes starts a
//! comment; `"…"` quotes part or all of a word, with `\"` and `\\` as the only escapes
//! (any other backslash stays as written, so Windows-ish paths and regex-looking text
//! survive). Quotes may start in the middle of a word, so `spawn="php-cgi -b x"` is one
//! word. A word whose unquoted beginning is `key=` with a lower-case key is an *option*;
//! anything else is a positional word. Every word keeps its 1-based column and width so
//! that errors can point at it.

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text with quotes removed and escapes applied.
    pub text: String,
    /// 1-based column (in characters) of the word's first character.
    pub col: usize,
    /// Width of the word as written, in characters (for the caret line).
    pub width: usize,
    /// For an option `key=value`: the length of `key` in `text`.
    pub key_len: Option<usize>,
}

impl Word {
    /// The option's key and value, if this word is an option.
    #[must_use]
    pub fn option(&self) -> Option<(&str, &str)> {
        self.key_len.map(|k| (&self.text[..k], &self.text[k + 1..]))
    }
}

/// A lexing failure: message and 1-based column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    /// What is wrong.
    pub message: String,
    /// Where (1-based column).
    pub col: usize,
    /// How many characters to underline.
    pub width: usize,
}

/// Splits one line (without its newline) into words.
pub fn words(line: &str) -> Result<Vec<Word>, LexError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' || c == '\r' {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let start = i;
        let mut text = String::new();
        // Length of the unquoted prefix, for option detection.
        let mut unquoted_prefix: Option<usize> = None;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' || c == '\t' || c == '\r' || c == '#' {
                break;
            }
            if c == '"' {
                unquoted_prefix.get_or_insert(text.len());
                let open = i;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                            text.push(chars[i + 1]);
                            i += 2;
                        }
                        other => {
                            text.push(other);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    return Err(LexError {
                        message: "unterminated quoted string".into(),
                        col: open + 1,
                        width: chars.len() - open,
                    });
                }
            } else {
                text.push(c);
                i += 1;
            }
        }
        let prefix = &text[..unquoted_prefix.unwrap_or(text.len())];
        let key_len = prefix.find('=').filter(|&k| is_key(&prefix[..k]));
        out.push(Word {
            text,
            col: start + 1,
            width: i - start,
            key_len,
        });
    }
    Ok(out)
}

fn is_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        words(line).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn splits_quotes_and_comments() {
        assert_eq!(
            texts("listen 127.0.0.1:8080 # main"),
            ["listen", "127.0.0.1:8080"]
        );
        assert_eq!(
            texts(r#"header /s/* Cache-Control "max-age=3600""#),
            ["header", "/s/*", "Cache-Control", "max-age=3600"]
        );
        assert_eq!(
            texts(r#"x "a # b" "q\"d" "b\\s" "c\d""#),
            ["x", "a # b", "q\"d", "b\\s", "c\\d"]
        );
        assert_eq!(texts("\t  "), Vec::<String>::new());
        assert_eq!(texts("# only"), Vec::<String>::new());
    }

    #[test]
    fn options_and_columns() {
        let w = words(r#"service php spawn="php-cgi -b x" env=A=B "k=v" https://h/?a=b"#).unwrap();
        assert_eq!(w[2].option(), Some(("spawn", "php-cgi -b x")));
        assert_eq!(w[2].col, 13);
        assert_eq!(w[2].width, 20);
        assert_eq!(w[3].option(), Some(("env", "A=B")));
        assert_eq!(w[4].option(), None, "a quoted key is not an option");
        assert_eq!(w[5].option(), None);
    }

    #[test]
    fn unterminated_quote() {
        let e = words(r#"root "abc"#).unwrap_err();
        assert_eq!(
            (e.col, e.message.as_str()),
            (6, "unterminated quoted string")
        );
    }
}
