//! Forms that call a server function: a plain HTML form posting to it until the page hydrates,
//! then the function called with the arguments the form's fields make.
//!
//! Leptos' `ActionForm` makes those arguments by decoding the fields with `serde_qs`: its parser
//! and a decoder per form in the first module of every page. Each form here says instead how its
//! fields make its arguments, as a few lines of Rust.

use std::{collections::HashMap, str::FromStr};

use leptos::{
    prelude::*,
    server_fn::{Http, ServerFn, codec::PostUrl},
};

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

    /// The number (or other value written as text) in field `name`.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, String> {
        self.get(name)
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|_| format!("{name}: not a valid value"))
    }

    /// As [`Fields::parse`], none when the form has no such field or it is empty.
    pub fn optional<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(_) => self.parse(name).map(Some),
        }
    }
}

/// A form calling `action`'s server function with the arguments `read` makes of its fields.
/// Fields that make none show as the action's error, as the server's refusals do. The function
/// takes its arguments URL-encoded, as the plain form sends them before the page hydrates; a
/// submit button's own name and value are not among the fields.
#[component]
pub fn PostForm<A, Answer>(
    action: ServerAction<A>,
    read: fn(&Fields) -> Result<A, String>,
    children: Children,
) -> impl IntoView
where
    A: ServerFn<Protocol = Http<PostUrl, Answer>, Error = AppError> + Clone + Send + Sync + 'static,
    A::Output: Send + Sync + 'static,
{
    let submit = move |ev: leptos::ev::SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let form = ev.target().and_then(|t| t.dyn_into().ok());
            match read(&form.map(|form| Fields::of(&form)).unwrap_or_default()) {
                Ok(args) => {
                    action.dispatch(args);
                }
                Err(reason) => {
                    action.value().set(Some(Err(AppError::Invalid(reason))));
                    action.version().update(|n| *n += 1);
                }
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (action, read);
    };
    view! {
        <form method="post" action=A::url() on:submit=submit>
            {children()}
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fields_read_as_the_types_the_arguments_take() {
        let f = fields(&[
            ("name", "ops"),
            ("version", " 7 "),
            ("index", ""),
            ("at", "2"),
        ]);
        assert_eq!(f.text("name"), "ops");
        assert_eq!(f.text("missing"), "");
        assert_eq!(f.parse::<i64>("version"), Ok(7));
        assert_eq!(f.optional::<usize>("index"), Ok(None));
        assert_eq!(f.optional::<usize>("missing"), Ok(None));
        assert_eq!(f.optional::<usize>("at"), Ok(Some(2)));
    }

    #[test]
    fn a_field_that_makes_no_value_is_named() {
        let f = fields(&[("version", "seven"), ("index", "-1")]);
        assert_eq!(
            f.parse::<i64>("version"),
            Err("version: not a valid value".into())
        );
        assert_eq!(
            f.optional::<usize>("index"),
            Err("index: not a valid value".into())
        );
        assert!(f.parse::<i64>("missing").is_err());
    }
}
