//! Text made safe where it goes: URL query values, HTML, shell words.

/// `text` as a URL query value: everything but unreserved characters and `/` escaped.
pub fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `text` safe inside HTML text and attribute values.
pub fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `text` as one shell word, whatever it holds.
pub fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_escape_keeps_its_text_whole_where_it_goes() {
        assert_eq!(url_encoded("/tmp/a b&c?"), "/tmp/a%20b%26c%3F");
        assert_eq!(
            html_escaped(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
