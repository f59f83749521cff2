//! Catalog: products with thumbnails, search and filters; a product with its
//! images, an upload zone and what was delivered where; catalog imports with
//! progress and their error reports.

use dioxus::prelude::*;
use serde_json::{Value, json};

use crate::api::{encode, text};
use crate::app::{Link, Loaded, Nav, Route, loaded, rows, use_get, write};
use crate::widgets::{
    Badge, EmptyState, Frame, ProblemNote, Progress, UploadZone, browser_channel, reply_body, short_time,
};

#[component]
pub(crate) fn Catalog(brand: String) -> Element {
    let mut search = use_signal(String::new);
    let mut category = use_signal(String::new);
    let mut images = use_signal(String::new);
    let mut used = use_signal(String::new);
    let list_brand = brand.clone();
    let products = use_get(move || {
        let mut path = format!("/api/v1/brands/{list_brand}/products?limit=200&archived=false");
        for (name, value) in
            [("q", search()), ("category", category()), ("has_images", images()), ("in_shootings", used())]
        {
            if !value.trim().is_empty() {
                path.push_str(&format!("&{name}={}", encode(value.trim())));
            }
        }
        Some(path)
    });
    let all_brand = brand.clone();
    let everything = use_get(move || Some(format!("/api/v1/brands/{all_brand}/products?limit=200")));
    let mut categories: Vec<String> =
        rows(&loaded(&everything)).iter().map(|p| text(p, "category")).collect();
    categories.sort();
    categories.dedup();
    let products = loaded(&products);
    let list = rows(&products);
    let filtering =
        !(search().is_empty() && category().is_empty() && images().is_empty() && used().is_empty());
    rsx! {
        div { class: "page-head",
            h1 { "Catalog" }
            span { class: "grow" }
            input { r#type: "search", id: "catalog-search", placeholder: "Search SKU or name", initial_value: "{search}",
                oninput: move |e| search.set(e.value()) }
            select { id: "filter-category", onchange: move |e| category.set(e.value()),
                option { value: "", "All categories" }
                for name in categories { option { key: "{name}", value: "{name}", "{name}" } }
            }
            select { id: "filter-images", onchange: move |e| images.set(e.value()),
                option { value: "", "With or without images" }
                option { value: "true", "With images" }
                option { value: "false", "Without images" }
            }
            select { id: "filter-used", onchange: move |e| used.set(e.value()),
                option { value: "", "Used or not" }
                option { value: "true", "Used in shootings" }
                option { value: "false", "Not used yet" }
            }
        }
        NewProduct { brand: brand.clone() }
        match products {
            Loaded::Failed(message) => rsx! { ProblemNote { problem: Some(message) } },
            Loaded::Waiting => rsx! { p { class: "muted", "Loading products…" } },
            Loaded::Ready(_) if list.is_empty() && filtering => rsx! {
                EmptyState { title: "No product matches", hint: "Clear the search or the filters to see the whole catalog." }
            },
            Loaded::Ready(_) if list.is_empty() => rsx! {
                EmptyState { title: "The catalog is empty", hint: "Add a product above, or import a catalog file below; then drop its photos on the product." }
            },
            Loaded::Ready(_) => rsx! {
                div { class: "grid", id: "products",
                    for product in list {
                        ProductTile { key: "{text(&product, \"product_id\")}", brand: brand.clone(), product }
                    }
                }
            },
        }
        Imports { brand: brand.clone() }
    }
}

#[component]
fn ProductTile(brand: String, product: Value) -> Element {
    let id = text(&product, "product_id");
    let count = product["image_count"].as_i64().unwrap_or(0);
    rsx! {
        Link { route: Route::Product { brand, product: id.clone() }, class: "tile product-tile",
            Frame { url: text(&product, "cover_url"), width: 320, alt: text(&product, "name") }
            div { class: "body",
                b { "{text(&product, \"name\")}" }
                span { class: "muted small", "{text(&product, \"sku\")} · {text(&product, \"category\")}" }
                span { class: "small", if count == 1 { "1 image" } else { "{count} images" } }
            }
        }
    }
}

#[component]
fn NewProduct(brand: String) -> Element {
    let mut open = use_signal(|| false);
    let mut sku = use_signal(String::new);
    let mut name = use_signal(String::new);
    let mut category = use_signal(|| "dresses".to_owned());
    let error = use_signal(|| None::<String>);
    let nav = use_context::<Nav>();
    if !open() {
        return rsx! {
            div { class: "row", style: "margin-bottom:16px",
                button { class: "primary", id: "new-product", onclick: move |_| open.set(true), "New product" }
            }
        };
    }
    rsx! {
        div { class: "card",
            h2 { "New product" }
            ProblemNote { problem: error() }
            div { class: "form",
                label { "SKU" input { r#type: "text", id: "product-sku", initial_value: "{sku}", oninput: move |e| sku.set(e.value()) } }
                label { "Name" input { r#type: "text", id: "product-name", initial_value: "{name}", oninput: move |e| name.set(e.value()) } }
                label { "Category" input { r#type: "text", id: "product-category", initial_value: "{category}", oninput: move |e| category.set(e.value()) } }
                div { class: "row",
                    button { class: "primary", id: "create-product",
                        onclick: move |_| {
                            let brand = brand.clone();
                            let body = json!({"sku": sku().trim(), "name": name().trim(), "category": category().trim()});
                            write("POST", format!("/api/v1/brands/{brand}/products"), Some(body), error, move |answer| {
                                open.set(false);
                                nav.go(Route::Product { brand, product: text(&answer, "id") });
                            });
                        },
                        "Create"
                    }
                    button { onclick: move |_| open.set(false), "Cancel" }
                }
            }
        }
    }
}

#[component]
pub(crate) fn Product(brand: String, product: String) -> Element {
    let (detail_brand, detail_id) = (brand.clone(), product.clone());
    let detail = use_get(move || Some(format!("/api/v1/brands/{detail_brand}/products/{detail_id}")));
    let (delivery_brand, delivery_id) = (brand.clone(), product.clone());
    let deliveries = use_get(move || {
        Some(format!("/api/v1/brands/{delivery_brand}/products/{delivery_id}/deliveries?limit=100"))
    });
    let detail = match loaded(&detail) {
        Loaded::Ready(detail) => detail,
        Loaded::Failed(message) => return rsx! { ProblemNote { problem: Some(message) } },
        Loaded::Waiting => return rsx! { p { class: "muted", "Loading the product…" } },
    };
    let images = detail["images"].as_array().cloned().unwrap_or_default();
    let deliveries = rows(&loaded(&deliveries));
    rsx! {
        div { class: "page-head",
            Link { route: Route::Catalog { brand: brand.clone() }, "← Catalog" }
            h1 { "{text(&detail, \"name\")}" }
            span { class: "muted", "{text(&detail, \"sku\")} · {text(&detail, \"category\")}" }
            if detail["archived"] == true { Badge { status: "archived" } }
        }
        div { class: "card",
            h2 { "Images" }
            if images.is_empty() {
                p { class: "muted", "No images yet. Drop the product's photos below (JPEG, PNG or WebP); each is checked and analysed as it arrives." }
            }
            div { class: "thumbs", id: "product-images",
                for image in images {
                    a { key: "{text(&image, \"image_id\")}", href: "{text(&image, \"url\")}", target: "_blank", title: "Open full size",
                        Frame { url: text(&image, "url"), width: 240, alt: text(&image, "kind") }
                    }
                }
            }
            div { style: "margin-top:12px",
                UploadZone {
                    zone: "product-{product}",
                    url: "/api/v1/brands/{brand}/products/{product}/images",
                    label: "Drop product photos here",
                    accept: "image/jpeg,image/png,image/webp",
                }
            }
        }
        div { class: "card table-card",
            div { style: "padding:16px 16px 0", h2 { "Delivered" } }
            if deliveries.is_empty() {
                p { class: "muted", style: "padding:0 16px 16px", "Nothing of this product has been delivered yet. Approve its predictions in review, then export them under Delivery." }
            } else {
                table { id: "product-deliveries",
                    thead { tr { th { "When" } th { "Channel" } th { "Where" } th { "File" } } }
                    tbody {
                        for delivery in deliveries {
                            tr { key: "{text(&delivery, \"rendition_id\")}", class: "delivered-row",
                                td { "{short_time(&text(&delivery, \"delivered_at\"))}" }
                                td { "{text(&delivery, \"channel\")}" }
                                td { Badge { status: "delivered" } " {text(&delivery[\"destination\"], \"kind\")}" }
                                td { class: "small", "{text(&delivery, \"file_name\")}" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Catalog imports: start one (a CSV or JSON Lines file, optionally a ZIP of
/// images) and follow its progress; failed rows are a downloadable report.
#[component]
fn Imports(brand: String) -> Element {
    let list_brand = brand.clone();
    let imports = use_get(move || Some(format!("/api/v1/brands/{list_brand}/imports?limit=10")));
    let imports = rows(&loaded(&imports));
    rsx! {
        div { class: "card", style: "margin-top:16px",
            h2 { "Import a catalog" }
            p { class: "muted small", "A CSV or JSON Lines file with a sku column (and name, category, attributes, images); optionally a ZIP with the images it names. Each row creates or updates the product of its SKU." }
            div { class: "gps-dropzone", "data-zone": "import", "data-url": "/api/v1/brands/{brand}/imports", "data-mode": "form",
                div { class: "row", style: "justify-content:center",
                    label { "Catalog file" input { class: "gps-file", r#type: "file", name: "catalog", accept: ".csv,.jsonl,.ndjson,text/csv" } }
                    label { "Images ZIP (optional)" input { class: "gps-file", r#type: "file", name: "images", accept: ".zip" } }
                    button { class: "primary gps-submit", r#type: "button", "Start import" }
                }
                ImportStarted {}
            }
            if !imports.is_empty() {
                table { style: "margin-top:12px",
                    thead { tr { th { "Started" } th { "File" } th { "Progress" } th { "Result" } th {} } }
                    tbody {
                        for import in imports {
                            ImportRow { key: "{text(&import, \"import_id\")}", brand: brand.clone(), import }
                        }
                    }
                }
            }
        }
    }
}

/// What happened to the last import started from this page.
#[component]
fn ImportStarted() -> Element {
    let mut outcome = use_signal(|| None::<Result<String, String>>);
    use_future(move || async move {
        let mut messages = browser_channel("import");
        while let Ok(message) = messages.recv::<Value>().await {
            if message["phase"] != "done" {
                outcome.set(Some(Ok("Sending the catalog…".into())));
                continue;
            }
            let body = reply_body(&message);
            let status = message["status"].as_u64().unwrap_or(0);
            outcome.set(Some(if (200..300).contains(&status) {
                Ok(format!("Import started: {} rows. Progress below.", body["total_rows"]))
            } else {
                Err(crate::api::worded(&body).unwrap_or_else(|| "the server refused the catalog".to_owned()))
            }));
        }
    });
    match outcome() {
        Some(Ok(note)) => rsx! { div { class: "notice info", style: "margin:12px 0 0", "{note}" } },
        Some(Err(problem)) => {
            rsx! { div { class: "notice error", style: "margin:12px 0 0", role: "alert", "{problem}" } }
        }
        None => rsx! {},
    }
}

#[component]
fn ImportRow(brand: String, import: Value) -> Element {
    let total = import["total_rows"].as_u64().unwrap_or(0);
    let through = import["through_row"].as_u64().unwrap_or(0);
    let failed = import["failed"].as_u64().unwrap_or(0);
    let id = text(&import, "import_id");
    rsx! {
        tr {
            td { "{short_time(&text(&import, \"started_at\"))}" }
            td { "{text(&import, \"file_name\")}" }
            td { style: "min-width:160px", Progress { done: through, total: total.max(1) } span { class: "small muted", "{through} / {total} rows" } }
            td {
                Badge { status: text(&import, "status") }
                span { class: "small", " {import[\"created\"]} created · {import[\"updated\"]} updated · {import[\"unchanged\"]} unchanged · {failed} failed" }
            }
            td {
                if failed > 0 {
                    a { href: "/api/v1/brands/{brand}/imports/{id}/errors", "Error report (CSV)" }
                }
            }
        }
    }
}
