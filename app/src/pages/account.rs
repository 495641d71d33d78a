//! Who is signed in, in the top bar, with the way out.

use leptos::prelude::*;

use crate::{auth::Role, error::AppError};

/// The signed-in user's name (none for anonymous watchers) and role.
#[server(output = crate::json::Json)]
pub async fn signed_in() -> Result<(Option<String>, Role), AppError> {
    let identity = crate::auth::identity()?;
    Ok((identity.name, identity.role))
}

#[component]
pub fn AccountMenu() -> impl IntoView {
    let who = Resource::new(|| (), |_| signed_in());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match who.await {
                    Ok((Some(name), role)) => view! {
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
