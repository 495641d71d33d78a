//! Markup written as text and set as an element's HTML (`inner_html`), for the parts of a page
//! that only show values: a chart's lines, gridlines and labels, a dashboard's links. In a view
//! each kind of element brings its own code to build, hydrate and update it into the page's
//! wasm (the charts' elements were 68 KB of it after wasm-opt); as text, the server writes the
//! same markup into the page, hydrating leaves it as it is, and a change sets it anew. Elements
//! with their own event handlers or state stay views.

/// Text written into markup, escaped: series names, labels and notices come from publishers.
pub(crate) struct Text<'a>(pub(crate) &'a str);

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::Text;

    #[test]
    fn text_from_publishers_cannot_open_markup_or_leave_its_attribute() {
        assert_eq!(
            Text(r#"<img src=x onerror="alert('1')"> & co"#).to_string(),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt; &amp; co"
        );
        assert_eq!(
            Text("cpu.total · 42 % — µs").to_string(),
            "cpu.total · 42 % — µs"
        );
    }
}
