//! Command lines as text a POSIX shell reads back as the same words.

use std::ffi::OsStr;

/// `word` as a POSIX shell needs it written to stay one word: unchanged when
/// it is made only of letters, digits and `_@%+=:,./-` (and not empty),
/// else in single quotes, with each `'` written `'\''`. Bytes that are not
/// UTF-8 are shown as U+FFFD.
pub fn shell_quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.into_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// The words of a command line, each quoted by [`shell_quote`], joined by
/// spaces: `sh -c 'sort big.txt | uniq -c'`.
pub fn command_line<'a>(words: impl IntoIterator<Item = &'a OsStr>) -> String {
    words
        .into_iter()
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_where_a_shell_needs_it() {
        let words = [
            "sh",
            "-c",
            "sort big.txt | uniq -c",
            "",
            "it's",
            "a=b,c/d.e",
        ];
        let line = command_line(words.iter().map(OsStr::new));
        assert_eq!(
            line,
            r#"sh -c 'sort big.txt | uniq -c' '' 'it'\''s' a=b,c/d.e"#
        );
        assert_eq!(shell_quote(OsStr::new("$HOME")), "'$HOME'");
        assert_eq!(shell_quote(OsStr::new("naïve")), "'naïve'");
    }
}
