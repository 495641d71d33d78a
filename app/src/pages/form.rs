//! Forms that call a server function: a plain HTML form posting to it. Before the page hydrates
//! the browser posts it and loads the page the server sends back to; after, the same fields go
//! by `fetch` and the answer shows in the page. The server reads the fields as the function's
//! arguments either way, so the page carries no encoder of arguments of its own.

use std::collections::HashMap;

use leptos::{
    prelude::*,
    server_fn::{Http, ServerFn, codec::PostUrl, error::ServerFnErrorErr},
};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// A form's named fields, as typed; of a name given twice, the last.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl FromIterator<(String, String)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(fields: I) -> Self {
        Self(fields.into_iter().collect())
    }
}

impl Fields {
    #[cfg(feature = "hydrate")]
    pub fn of(form: &web_sys::HtmlFormElement) -> Self {
        let Ok(data) = web_sys::FormData::new_with_form(form) else {
            return Self::default();
        };
        // FormData iterates as [name, value] pairs.
        let entries = js_sys::try_iter(&data).ok().flatten().into_iter().flatten();
        entries
            .flatten()
            .filter_map(|entry| {
                let pair = js_sys::Array::from(&entry);
                Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Field `name` as typed; empty when the form has none.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

/// What a form's posts to server function `F` came to: the latest answer, the server's refusal
/// included, and how many answers came.
pub struct Posted<F: ServerFn> {
    value: RwSignal<Option<Result<F::Output, AppError>>>,
    version: RwSignal<u32>,
}

impl<F: ServerFn> Clone for Posted<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: ServerFn> Copy for Posted<F> {}

impl<F: ServerFn> Default for Posted<F>
where
    F::Output: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<F: ServerFn> Posted<F>
where
    F::Output: Send + Sync + 'static,
{
    pub fn new() -> Self {
        Self {
            value: RwSignal::new(None),
            version: RwSignal::new(0),
        }
    }

    /// The latest answer.
    pub fn value(self) -> RwSignal<Option<Result<F::Output, AppError>>> {
        self.value
    }

    /// How many answers came.
    pub fn version(self) -> RwSignal<u32> {
        self.version
    }

    /// Why the server refused the latest post, if it did.
    pub fn refusal(self) -> Option<String> {
        self.value
            .with(|v| v.as_ref()?.as_ref().err().map(ToString::to_string))
    }

    /// Takes the answer to a post: the function's output as JSON, or its refusal.
    fn answer(self, answer: Result<String, AppError>)
    where
        F::Output: DeserializeOwned,
    {
        let answer = answer.and_then(|text| {
            crate::json::read(&text)
                .map_err(|e| AppError::Call(ServerFnErrorErr::Deserialization(e.to_string())))
        });
        self.value.set(Some(answer));
        self.version.update(|n| *n += 1);
    }
}

/// A form posting its fields to server function `F`, whose answers go to `posted`. `F` takes its
/// arguments URL-encoded, as the browser sends a form; a submit button's own name and value are
/// not among the fields.
#[component]
pub fn PostForm<F, Answer>(posted: Posted<F>, children: Children) -> impl IntoView
where
    F: ServerFn<Protocol = Http<PostUrl, Answer>, Error = AppError> + 'static,
    F::Output: DeserializeOwned + Send + Sync + 'static,
{
    // All that depends on `F`; the form itself is one function for every form.
    let answered = Callback::new(move |answer| posted.answer(answer));
    form_posting_to(F::PATH, answered, children)
}

fn form_posting_to(
    to: &'static str,
    answered: Callback<Result<String, AppError>>,
    children: Children,
) -> AnyView {
    let submit = move |ev: leptos::ev::SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let fields = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
                .and_then(|form| web_sys::FormData::new_with_form(&form).ok())
                .and_then(|data| {
                    web_sys::UrlSearchParams::new_with_str_sequence_sequence(&data).ok()
                })
                .map(|fields| String::from(fields.to_string()))
                .unwrap_or_default();
            leptos::task::spawn_local(async move { answered.run(post(to, fields).await) });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = answered;
    };
    view! {
        <form method="post" action=to on:submit=submit>
            {children()}
        </form>
    }
    .into_any()
}

/// Posts URL-encoded `fields` to the server function at `to` as its own client does: an error
/// status brings the function's error, and a redirect it asks for is followed by the router.
/// The answer is the function's output, as JSON.
#[cfg(feature = "hydrate")]
async fn post(to: &str, fields: String) -> Result<String, AppError> {
    use leptos::server_fn::{
        client::{Client, browser::BrowserClient},
        error::FromServerFnError,
        redirect::call_redirect_hook,
        request::ClientReq,
        response::ClientRes,
    };
    type Browser = BrowserClient;
    type Request = <Browser as Client<AppError>>::Request;
    let request = <Request as ClientReq<AppError>>::try_new_post(
        to,
        "application/x-www-form-urlencoded",
        "application/json",
        fields,
    )?;
    let response = <Browser as Client<AppError>>::send(request).await?;
    let (status, location) = (
        ClientRes::<AppError>::status(&response),
        ClientRes::<AppError>::location(&response),
    );
    let redirect = (300..400).contains(&status) || ClientRes::<AppError>::has_redirect(&response);
    let text = ClientRes::<AppError>::try_into_string(response).await?;
    if (400..600).contains(&status) {
        return Err(AppError::de(text.into()));
    }
    if redirect {
        call_redirect_hook(&location);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_reads_as_typed_and_the_last_of_a_repeated_name_wins() {
        let f: Fields = [("name", "ops"), ("scope", "a"), ("scope", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(f.text("name"), "ops");
        assert_eq!(f.get("scope"), Some("b"));
        assert_eq!((f.get("missing"), f.text("missing")), (None, String::new()));
    }
}
