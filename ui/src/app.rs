//! The root component: addresses (every screen has one, so a reload or a
//! reconnect comes back to it), the layout with its navigation, the live
//! notices that refresh what is on screen, and the data hook the screens use.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dioxus::prelude::*;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use crate::api::{Api, Client, Problem, items, text};

/// The [`Api`] as a component property.
#[derive(Clone)]
pub(crate) struct ApiHandle(pub(crate) Arc<dyn Api>);

impl PartialEq for ApiHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A screen and what it shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    Brands,
    Catalog { brand: String },
    Product { brand: String, product: String },
    Studio { brand: String },
    Shootings { brand: String },
    Shooting { brand: String, shooting: String },
    Queue { brand: String },
    Review { brand: String, shooting: String },
    Delivery { brand: String },
    Activity { brand: String },
    Members { brand: String },
    NotFound { path: String },
}

impl Route {
    /// The screen of an `/app/…` address.
    pub(crate) fn parse(address: &str) -> Route {
        let path = address.split(['?', '#']).next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_start_matches("/app").split('/').filter(|p| !p.is_empty()).collect();
        let brand = |i: usize| parts.get(i).map(|s| (*s).to_owned()).unwrap_or_default();
        match parts.as_slice() {
            [] => Route::Brands,
            [_] | [_, "catalog"] => Route::Catalog { brand: brand(0) },
            [_, "catalog", product] => Route::Product { brand: brand(0), product: (*product).to_owned() },
            [_, "studio"] => Route::Studio { brand: brand(0) },
            [_, "shootings"] => Route::Shootings { brand: brand(0) },
            [_, "shootings", shooting] => {
                Route::Shooting { brand: brand(0), shooting: (*shooting).to_owned() }
            }
            [_, "shootings", shooting, "review"] => {
                Route::Review { brand: brand(0), shooting: (*shooting).to_owned() }
            }
            [_, "queue"] => Route::Queue { brand: brand(0) },
            [_, "delivery"] => Route::Delivery { brand: brand(0) },
            [_, "activity"] => Route::Activity { brand: brand(0) },
            [_, "members"] => Route::Members { brand: brand(0) },
            _ => Route::NotFound { path: path.to_owned() },
        }
    }

    /// The address of the screen.
    pub(crate) fn address(&self) -> String {
        match self {
            Route::Brands => "/app".to_owned(),
            Route::Catalog { brand } => format!("/app/{brand}/catalog"),
            Route::Product { brand, product } => format!("/app/{brand}/catalog/{product}"),
            Route::Studio { brand } => format!("/app/{brand}/studio"),
            Route::Shootings { brand } => format!("/app/{brand}/shootings"),
            Route::Shooting { brand, shooting } => format!("/app/{brand}/shootings/{shooting}"),
            Route::Review { brand, shooting } => format!("/app/{brand}/shootings/{shooting}/review"),
            Route::Queue { brand } => format!("/app/{brand}/queue"),
            Route::Delivery { brand } => format!("/app/{brand}/delivery"),
            Route::Activity { brand } => format!("/app/{brand}/activity"),
            Route::Members { brand } => format!("/app/{brand}/members"),
            Route::NotFound { path } => path.clone(),
        }
    }

    fn brand(&self) -> Option<&str> {
        match self {
            Route::Brands | Route::NotFound { .. } => None,
            Route::Catalog { brand }
            | Route::Product { brand, .. }
            | Route::Studio { brand }
            | Route::Shootings { brand }
            | Route::Shooting { brand, .. }
            | Route::Review { brand, .. }
            | Route::Queue { brand }
            | Route::Delivery { brand }
            | Route::Activity { brand }
            | Route::Members { brand } => Some(brand),
        }
    }
}

/// Moves between screens and keeps the browser's address in step.
#[derive(Clone, Copy)]
pub(crate) struct Nav {
    route: Signal<Route>,
}

impl Nav {
    pub(crate) fn go(mut self, route: Route) {
        // Through the LiveView's own history: it owns the browser's history
        // state and would otherwise overwrite an address set behind its back.
        history().push(route.address());
        self.route.set(route);
    }
}

/// Bumped whenever what the screens show may have changed (a live notice,
/// one of the person's writes); every [`use_get`] reads again.
#[derive(Clone, Copy)]
pub(crate) struct Refresh(pub(crate) Signal<u64>);

impl Refresh {
    pub(crate) fn bump(mut self) {
        self.0 += 1;
    }
}

/// What a [`use_get`] holds.
pub(crate) type Fetched = Memo<Option<Result<Value, Problem>>>;

/// Whether a loader is reading, and whether it must read again when done.
#[derive(Default)]
struct LoaderState {
    reading: Cell<bool>,
    again: Cell<bool>,
}

/// Keeps `T` loaded for what `key` says (re-read when the key changes or a
/// refresh comes). A read in progress is never cancelled: a refresh during it
/// only asks for one more read after it, so a burst of live notices costs at
/// most two reads and the screen always ends up current. The last value stays
/// on screen meanwhile (no flicker, no layout jump).
pub(crate) fn use_loader<K, T, F>(
    key: impl Fn() -> K + 'static,
    load: impl Fn(Client, K) -> F + 'static,
) -> Signal<Option<T>>
where
    K: PartialEq + Clone + 'static,
    T: 'static,
    F: Future<Output = T> + 'static,
{
    let client = use_context::<Client>();
    let refresh = use_context::<Refresh>();
    let mut value = use_signal(|| None::<T>);
    let wanted = use_memo(move || ((refresh.0)(), key()));
    let state = use_hook(|| Rc::new(LoaderState::default()));
    let load = use_hook(|| Rc::new(load));
    use_effect(move || {
        let _ = wanted();
        if state.reading.get() {
            state.again.set(true);
            return;
        }
        state.reading.set(true);
        let (client, state, load) = (client.clone(), state.clone(), load.clone());
        spawn(async move {
            loop {
                let (_, key) = wanted.peek().clone();
                let loaded = load(client.clone(), key).await;
                value.set(Some(loaded));
                if !state.again.replace(false) {
                    state.reading.set(false);
                    break;
                }
            }
        });
    });
    value
}

/// A read of `path` that follows the screen (see [`use_loader`]); `None` from
/// `path` means "nothing to read yet".
pub(crate) fn use_get(path: impl Fn() -> Option<String> + 'static) -> Fetched {
    let fetched = use_loader(path, |client, path| async move {
        match path {
            Some(path) => Some(client.get(&path).await),
            None => None,
        }
    });
    // Flatten "not loaded" and "nothing to read" into one None.
    use_memo(move || fetched.read().clone().flatten())
}

/// What a [`use_get`] holds: the value, or the problem, or nothing yet.
pub(crate) fn loaded(fetched: &Fetched) -> Loaded {
    match &*fetched.read() {
        Some(Ok(value)) => Loaded::Ready(value.clone()),
        Some(Err(problem)) => Loaded::Failed(problem.message.clone()),
        None => Loaded::Waiting,
    }
}

/// See [`loaded`].
pub(crate) enum Loaded {
    Waiting,
    Ready(Value),
    Failed(String),
}

impl Loaded {
    /// For [`crate::widgets::ListStatus`]: `rows` shown once read, or the problem.
    pub(crate) fn counted(&self, rows: usize) -> Option<Result<usize, String>> {
        match self {
            Loaded::Waiting => None,
            Loaded::Ready(_) => Some(Ok(rows)),
            Loaded::Failed(message) => Some(Err(message.clone())),
        }
    }

    pub(crate) fn value(&self) -> Value {
        match self {
            Loaded::Ready(value) => value.clone(),
            _ => Value::Null,
        }
    }
}

/// Runs a write; on success bumps the refresh and calls `done` with the
/// answer, on failure puts the problem into `error`.
pub(crate) fn write(
    method: &'static str,
    path: String,
    body: Option<Value>,
    mut error: Signal<Option<String>>,
    done: impl FnOnce(Value) + 'static,
) {
    let client = consume_context::<Client>();
    let refresh = consume_context::<Refresh>();
    spawn(async move {
        match client.send(method, &path, body).await {
            Ok(answer) => {
                error.set(None);
                refresh.bump();
                done(answer);
            }
            Err(problem) => error.set(Some(problem.message)),
        }
    });
}

/// The root: who is signed in, which screen, and the layout around it.
#[component]
pub(crate) fn Root(api: ApiHandle, path: String) -> Element {
    use_context_provider(|| Client::new(api.0.clone()));
    let route = use_signal(|| Route::parse(&path));
    use_context_provider(|| Nav { route });
    let refresh = use_signal(|| 0u64);
    use_context_provider(|| Refresh(refresh));
    let mut route_for_history = route;
    use_future(move || async move {
        let mut navigation = crate::widgets::browser_channel("navigation");
        while let Ok(address) = navigation.recv::<String>().await {
            route_for_history.set(Route::parse(&address));
        }
    });
    let me = use_get(|| Some("/api/v1/me".to_owned()));
    let me = loaded(&me);
    let current = route();
    match (&me, &current) {
        (Loaded::Waiting, _) => rsx! { div { class: "content", p { class: "muted", "Loading…" } } },
        (Loaded::Failed(message), _) => rsx! {
            div { class: "content",
                div { class: "notice error", role: "alert", "{message}" }
                a { href: "/app/sign-in", "Sign in again" }
            }
        },
        (Loaded::Ready(me), Route::Brands) => rsx! { BrandPicker { me: me.clone() } },
        (Loaded::Ready(me), _) => rsx! { Layout { me: me.clone(), route: current.clone() } },
    }
}

/// The brands of the signed-in person (the gateway opens a single brand
/// directly).
#[component]
fn BrandPicker(me: Value) -> Element {
    let nav = use_context::<Nav>();
    let brands = me["brands"].as_array().cloned().unwrap_or_default();
    rsx! {
        div { class: "sign-in",
            h1 { style: "margin-bottom:16px", "GPS" }
            div { class: "card",
                h2 { "Choose a brand" }
                if brands.is_empty() {
                    div { class: "empty-state",
                        h3 { "You are not a member of any brand yet" }
                        p { "Ask an owner of your brand to add your email under Members." }
                    }
                }
                div { class: "stack",
                    for membership in brands {
                        a {
                            key: "{text(&membership, \"brand\")}",
                            "data-nav": "1",
                            href: "/app/{text(&membership, \"brand\")}/catalog",
                            onclick: {
                                let brand = text(&membership, "brand");
                                move |_| nav.go(Route::Catalog { brand: brand.clone() })
                            },
                            "{text(&membership, \"name\")} "
                            span { class: "badge", "{text(&membership, \"role\")}" }
                        }
                    }
                }
            }
        }
    }
}

/// A navigation link to `route`.
#[component]
pub(crate) fn Link(route: Route, class: Option<String>, children: Element) -> Element {
    let nav = use_context::<Nav>();
    let address = route.address();
    rsx! {
        a {
            class: class.unwrap_or_default(),
            "data-nav": "1",
            href: "{address}",
            onclick: move |_| nav.go(route.clone()),
            {children}
        }
    }
}

#[component]
fn Layout(me: Value, route: Route) -> Element {
    let brand = route.brand().unwrap_or_default().to_owned();
    let membership = me["brands"]
        .as_array()
        .and_then(|brands| brands.iter().find(|m| m["brand"] == brand.as_str()).cloned())
        .unwrap_or(Value::Null);
    let sections = [
        ("Catalog", Route::Catalog { brand: brand.clone() }),
        ("Subjects & styles", Route::Studio { brand: brand.clone() }),
        ("Shootings", Route::Shootings { brand: brand.clone() }),
        ("Generation queue", Route::Queue { brand: brand.clone() }),
        ("Delivery", Route::Delivery { brand: brand.clone() }),
        ("Activity & usage", Route::Activity { brand: brand.clone() }),
        ("Members", Route::Members { brand: brand.clone() }),
    ];
    let active = |section: &Route| match (section, &route) {
        (Route::Catalog { .. }, Route::Product { .. }) => true,
        (Route::Shootings { .. }, Route::Shooting { .. } | Route::Review { .. }) => true,
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
    };
    let brand_name = match text(&membership, "name") {
        name if name.is_empty() => brand.clone(),
        name => name,
    };
    rsx! {
        div { class: "shell",
            nav { class: "sidebar",
                div { class: "logo", "GPS" }
                div { class: "brand-name", "{brand_name}" }
                // A brand the person is not a member of gets no sections.
                if !membership.is_null() {
                    for (label, section) in sections {
                        Link {
                            key: "{label}",
                            class: if active(&section) { "active" } else { "" },
                            route: section.clone(),
                            "{label}"
                        }
                    }
                }
                div { class: "spacer" }
                if me["brands"].as_array().is_some_and(|b| b.len() > 1) {
                    Link { route: Route::Brands, "Switch brand" }
                }
                if membership.is_null() {
                    div { class: "who", "Signed in" }
                } else {
                    div { class: "who", "Signed in · {text(&membership, \"role\")}" }
                }
                form { method: "post", action: "/app/sign-out",
                    button { r#type: "submit", "Sign out" }
                }
            }
            main { class: "content",
                if membership.is_null() {
                    div { class: "notice error", role: "alert",
                        "You are not a member of “{brand}”, or it does not exist. "
                        Link { route: Route::Brands, "Choose one of your brands" }
                    }
                } else {
                    LiveFollower { key: "{brand}", brand: brand.clone() }
                    Screen { route: route.clone(), role: text(&membership, "role") }
                }
            }
        }
    }
}

#[component]
fn Screen(route: Route, role: String) -> Element {
    match route {
        Route::Catalog { brand } => rsx! { crate::catalog::Catalog { brand } },
        Route::Product { brand, product } => rsx! { crate::catalog::Product { brand, product } },
        Route::Studio { brand } => rsx! { crate::studio::Studio { brand } },
        Route::Shootings { brand } => rsx! { crate::production::Shootings { brand } },
        Route::Shooting { brand, shooting } => rsx! { crate::production::Shooting { brand, shooting } },
        Route::Queue { brand } => rsx! { crate::production::Queue { brand } },
        Route::Review { brand, shooting } => rsx! { crate::review::Review { brand, shooting } },
        Route::Delivery { brand } => rsx! { crate::delivery::Delivery { brand } },
        Route::Activity { brand } => rsx! { crate::members::Activity { brand } },
        Route::Members { brand } => rsx! { crate::members::Members { brand, role } },
        Route::Brands => rsx! {},
        Route::NotFound { path } => rsx! {
            div { class: "empty-state",
                h3 { "Nothing lives at {path}" }
                p { "Use the navigation on the left." }
            }
        },
    }
}

/// Follows the brand's live notices and refreshes the screen when they come
/// (bursts coalesced). A broken stream is followed again, and the screen
/// re-read, because notices may have been missed meanwhile.
#[component]
fn LiveFollower(brand: String) -> Element {
    let client = use_context::<Client>();
    let refresh = use_context::<Refresh>();
    use_future(move || {
        let client = client.clone();
        let brand = brand.clone();
        async move {
            loop {
                let mut notices = client.follow(format!("/api/v1/brands/{brand}/live"));
                while notices.next().await.is_some() {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    while let Some(Some(_)) = notices.next().now_or_never() {}
                    refresh.bump();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                refresh.bump();
            }
        }
    });
    rsx! {}
}

/// The rows of a page, for screens that list.
pub(crate) fn rows(loaded: &Loaded) -> Vec<Value> {
    items(&loaded.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_screen_has_an_address_that_leads_back_to_it() {
        let brand = "acme".to_owned();
        let routes = [
            Route::Brands,
            Route::Catalog { brand: brand.clone() },
            Route::Product { brand: brand.clone(), product: "p1".into() },
            Route::Studio { brand: brand.clone() },
            Route::Shootings { brand: brand.clone() },
            Route::Shooting { brand: brand.clone(), shooting: "s1".into() },
            Route::Review { brand: brand.clone(), shooting: "s1".into() },
            Route::Queue { brand: brand.clone() },
            Route::Delivery { brand: brand.clone() },
            Route::Activity { brand: brand.clone() },
            Route::Members { brand },
        ];
        for route in routes {
            assert_eq!(Route::parse(&route.address()), route);
        }
        assert_eq!(Route::parse("/app/acme"), Route::Catalog { brand: "acme".into() });
        assert_eq!(Route::parse("/app/acme/catalog?q=dress"), Route::Catalog { brand: "acme".into() });
        assert!(matches!(Route::parse("/app/acme/nowhere/at/all"), Route::NotFound { .. }));
    }
}
