//! JSON between the server and the page. The server writes it with `serde_json`; the browser
//! reads it with its own `JSON.parse` and hands the parsed value to the types' `Deserialize`
//! (`parsed`): the page carries no JSON parser of its own, and none of the code `serde_json`
//! would inline into every type's reader.
//!
//! Server functions answer JSON read back from text (`TextJson`), as the page's resources are
//! read when it hydrates (`Data`). The functions pages read through take their arguments as JSON
//! too: the page already writes JSON (its socket's frames), where URL-encoded arguments would
//! bring `serde_qs`' encoder. The functions a form posts to keep URL-encoded arguments, which the
//! browser writes itself.

#[cfg(feature = "hydrate")]
mod parsed;

use leptos::prelude::Resource;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType, codec::Post};
use leptos_server::codee::{Decoder, Encoder};
use serde::{Serialize, de::DeserializeOwned};

/// Reads a value from JSON text: the browser's parser in the page, `serde_json` elsewhere.
#[cfg(feature = "hydrate")]
pub use parsed::{Error, read};

/// Why JSON text could not be read.
#[cfg(not(feature = "hydrate"))]
pub type Error = serde_json::Error;

/// Reads a value from JSON text: the browser's parser in the page, `serde_json` elsewhere.
#[cfg(not(feature = "hydrate"))]
pub fn read<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text)
}

/// How a page's data crosses into it: rendered into the page by the server as JSON, and read
/// back by the browser's `JSON.parse` when the page hydrates.
pub struct Codec;

impl<T: Serialize> Encoder<T> for Codec {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Codec {
    type Error = Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, Error> {
        read(text)
    }
}

/// A page's data, fetched by a server function.
pub type Data<T> = Resource<T, Codec>;

/// A page's data, fetched by `fetcher` again whenever `source` changes.
#[track_caller]
pub fn data<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Data<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: PartialEq + Clone + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

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
    type Error = String;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
        read(text).map_err(|e| e.to_string())
    }
}
