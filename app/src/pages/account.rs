//! Who is signed in, in the top bar, with the way out.

use leptos::prelude::*;

use super::header::HeaderData;

#[component]
pub fn AccountMenu() -> impl IntoView {
    let header = super::Header::expect().0;
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match header.await {
                    Ok(HeaderData { name: Some(name), role, .. }) => view! {
                        <span class="account" data-testid="account">
                            <a class="who" href="/settings">{name} " · " {role.as_str()}</a>
                            // A plain form: signing out works with or without the page's script.
                            <form method="post" action="/logout">
                                <button type="submit">"Sign out"</button>
                            </form>
                        </span>
                    }
                    .into_any(),
                    _ => view! { <a class="account" href="/login">"Sign in"</a> }.into_any(),
                }
            })}
        </Suspense>
    }
}
