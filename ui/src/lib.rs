//! The GPS UI: Dioxus components rendered on the server (LiveView). The
//! browser gets DOM patches over a WebSocket; no wasm toolchain.
//!
//! Architecture invariant: the UI reaches the platform only through the
//! [`Api`] port, which the gateway implements by calling its own API
//! in-process with the person's session (see `api`); it depends on no sqlx or
//! NATS crate. Screens follow the pipeline: catalog, subjects and styles,
//! shootings, the generation queue, review, delivery, activity and usage,
//! members. Every screen reads the read models again when the brand's live
//! notices arrive, so a dropped connection loses nothing: the page reconnects
//! and the state comes back from the read models.

mod api;
mod app;
mod catalog;
mod delivery;
mod members;
mod production;
mod review;
mod shell;
mod studio;
mod widgets;

use std::sync::Arc;

use dioxus::prelude::VirtualDom;

pub use api::{Api, ApiCall, ApiReply};
pub use shell::{escape, page, password_set_page, set_password_page, sign_in_page};

/// The LiveView runtime of a gateway: one pool of threads running every
/// connection's components.
pub struct Ui {
    pool: dioxus_liveview::LiveViewPool,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui").finish_non_exhaustive()
    }
}

impl Default for Ui {
    fn default() -> Self {
        Ui::new()
    }
}

impl Ui {
    /// A runtime with one component thread per core.
    pub fn new() -> Ui {
        Ui { pool: dioxus_liveview::LiveViewPool::new() }
    }

    /// Runs the UI on one browser's socket until it closes, starting at
    /// `path` (an `/app/…` address) and calling the platform through `api`.
    pub async fn serve(&self, socket: axum::extract::ws::WebSocket, api: Arc<dyn Api>, path: String) {
        let props = app::RootProps { api: app::ApiHandle(api), path };
        let outcome = self
            .pool
            .launch_virtualdom(dioxus_liveview::axum_socket(socket), move || {
                VirtualDom::new_with_props(app::Root, props)
            })
            .await;
        if let Err(error) = outcome {
            tracing::debug!(%error, "a UI connection ended");
        }
    }
}
