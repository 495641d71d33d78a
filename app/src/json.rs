//! How server functions answer: JSON, read back from text as the page's resources are read when
//! it hydrates. `serde_json` reading bytes (server_fn's own JSON) would put a second decoder of
//! every answer's type in the wasm beside the one reading text.
//!
//! The functions pages read through take their arguments as JSON too: the page already writes
//! JSON (its socket's frames), where URL-encoded arguments would bring `serde_qs`' encoder. The
//! functions a form posts to keep URL-encoded arguments, which the browser writes itself.

use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType, codec::Post};
use serde::{Serialize, de::DeserializeOwned};

/// JSON in a `POST`'s answer, decoded from text.
pub type Json = Post<TextJson>;

pub struct TextJson;

impl ContentType for TextJson {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for TextJson {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for TextJson {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for TextJson {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}
