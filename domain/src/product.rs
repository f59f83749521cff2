//! The Product aggregate: a catalog item (SKU, name, category, attributes) and
//! its images. An archived product accepts no edits until it is restored.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, ImageId, ProductId};
use crate::values::{AssetRef, Category, ImageAnalysis, Name, Sku, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most images one product may carry.
pub const MAX_IMAGES: usize = 50;
/// The most attributes one product may carry.
pub const MAX_ATTRIBUTES: usize = 100;

/// Which view of the product an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageView {
    /// Front.
    Front,
    /// Back.
    Back,
    /// A close-up of a detail (fabric, button, print).
    Detail,
    /// Laid flat, shot from above.
    FlatLay,
    /// On an invisible (ghost) mannequin.
    GhostMannequin,
}

/// Product commands.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    /// Adds a product to the brand's catalog.
    CreateProduct {
        /// The new product's id.
        product_id: ProductId,
        /// The owning brand.
        brand_id: BrandId,
        /// The brand's SKU.
        sku: Sku,
        /// Display name.
        name: Name,
        /// Category slug.
        category: Category,
        /// Free attributes (colour, material, fit…).
        attributes: BTreeMap<String, String>,
    },
    /// Changes name, category or attributes; fields left `None` stay as they are.
    UpdateProductDetails {
        /// New name.
        name: Option<Name>,
        /// New category.
        category: Option<Category>,
        /// New attributes, replacing the old set.
        attributes: Option<BTreeMap<String, String>>,
    },
    /// Attaches an uploaded image.
    AddProductImage {
        /// The image's id within the product.
        image_id: ImageId,
        /// The stored asset.
        asset: AssetRef,
        /// Which view it shows.
        view: ImageView,
        /// What ingest learned about the image, when it was uploaded through GPS.
        analysis: Option<ImageAnalysis>,
    },
    /// Detaches an image (the stored asset stays, content-addressed).
    RemoveProductImage {
        /// The image to remove.
        image_id: ImageId,
    },
    /// Takes the product out of the active catalog.
    ArchiveProduct {
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
    /// Brings an archived product back.
    RestoreProduct,
    /// Creates the product from a catalog row, or brings an existing one in
    /// line with it: details that differ are updated and images not attached
    /// yet (by content) are added; images already there stay, nothing is
    /// removed. One command, so a row's events are one atomic batch: an
    /// import never leaves a product created without its images, and a row
    /// that matches the product records nothing at all.
    ImportProduct {
        /// The product's id (the existing one, or a new one).
        product_id: ProductId,
        /// The owning brand.
        brand_id: BrandId,
        /// The brand's SKU.
        sku: Sku,
        /// Display name.
        name: Name,
        /// Category slug.
        category: Category,
        /// Free attributes, the whole set.
        attributes: BTreeMap<String, String>,
        /// The row's images, in order, already stored.
        images: Vec<ImportedImage>,
    },
}

/// One image of an imported catalog row.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedImage {
    /// The image's id within the product.
    pub image_id: ImageId,
    /// The stored working copy.
    pub asset: AssetRef,
    /// Which view it shows.
    pub view: ImageView,
    /// What ingest learned about the image.
    pub analysis: Option<ImageAnalysis>,
}

/// A product was added to the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductCreated {
    /// The product's id.
    pub product_id: ProductId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// The brand's SKU.
    pub sku: Sku,
    /// Display name.
    pub name: Name,
    /// Category slug.
    pub category: Category,
    /// Free attributes.
    pub attributes: BTreeMap<String, String>,
}

/// A product's details changed; absent fields did not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductDetailsUpdated {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// New attributes (the whole set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// An image was attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductImageAdded {
    /// The image's id within the product.
    pub image_id: ImageId,
    /// The stored asset.
    pub asset: AssetRef,
    /// Which view it shows.
    pub view: ImageView,
    /// What ingest learned about the image (original, perceptual hash,
    /// colours); absent in events written before ingest recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<ImageAnalysis>,
}

/// An image was detached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductImageRemoved {
    /// The removed image.
    pub image_id: ImageId,
}

/// The product was archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductArchived {
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// The product was restored from the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductRestored {}

crate::domain_events! {
    aggregate: Product,
    /// Product events.
    pub enum ProductEvent {
        /// See [`ProductCreated`].
        Created(ProductCreated) = ("product.created", 1),
        /// See [`ProductDetailsUpdated`].
        DetailsUpdated(ProductDetailsUpdated) = ("product.details_updated", 1),
        /// See [`ProductImageAdded`].
        ImageAdded(ProductImageAdded) = ("product.image_added", 1),
        /// See [`ProductImageRemoved`].
        ImageRemoved(ProductImageRemoved) = ("product.image_removed", 1),
        /// See [`ProductArchived`].
        Archived(ProductArchived) = ("product.archived", 1),
        /// See [`ProductRestored`].
        Restored(ProductRestored) = ("product.restored", 1),
    }
}

/// A product image as the state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProductImage {
    /// The stored asset.
    pub asset: AssetRef,
    /// Which view it shows.
    pub view: ImageView,
}

/// The state of a product, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Product {
    /// Present once created.
    pub details: Option<ProductCreated>,
    /// Attached images by id.
    pub images: BTreeMap<ImageId, ProductImage>,
    /// Whether the product is archived.
    pub archived: bool,
}

impl Product {
    fn existing(&self) -> Result<&ProductCreated, DomainError> {
        self.details.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Product })
    }

    fn editable(&self) -> Result<&ProductCreated, DomainError> {
        let details = self.existing()?;
        if self.archived {
            return Err(DomainError::invalid_state(format!(
                "product {} is archived; restore it before changing it",
                details.product_id
            )));
        }
        Ok(details)
    }
}

fn check_attributes(attributes: &BTreeMap<String, String>) -> Result<(), DomainError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(DomainError::rule(format!(
            "a product has at most {MAX_ATTRIBUTES} attributes; {} were given",
            attributes.len()
        )));
    }
    if let Some((key, _)) =
        attributes.iter().find(|(key, value)| key.trim().is_empty() || key.len() > 100 || value.len() > 1000)
    {
        return Err(DomainError::rule(format!(
            "attribute {key:?} is invalid: names are 1 to 100 characters, values at most 1000"
        )));
    }
    Ok(())
}

impl Aggregate for Product {
    const KIND: AggregateKind = AggregateKind::Product;
    const STATE_VERSION: u32 = 1;
    type Command = ProductCommand;
    type Event = ProductEvent;

    fn decide(&self, command: &ProductCommand) -> Result<Vec<ProductEvent>, DomainError> {
        match command {
            ProductCommand::CreateProduct { product_id, brand_id, sku, name, category, attributes } => {
                if self.details.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Product,
                        id: product_id.to_string(),
                    });
                }
                check_attributes(attributes)?;
                Ok(vec![
                    ProductCreated {
                        product_id: product_id.clone(),
                        brand_id: brand_id.clone(),
                        sku: sku.clone(),
                        name: name.clone(),
                        category: category.clone(),
                        attributes: attributes.clone(),
                    }
                    .into(),
                ])
            }
            ProductCommand::UpdateProductDetails { name, category, attributes } => {
                let current = self.editable()?;
                if let Some(attributes) = attributes {
                    check_attributes(attributes)?;
                }
                // Only what really changes is recorded; an update that changes
                // nothing records nothing.
                let changed = ProductDetailsUpdated {
                    name: name.clone().filter(|n| *n != current.name),
                    category: category.clone().filter(|c| *c != current.category),
                    attributes: attributes.clone().filter(|a| *a != current.attributes),
                };
                if changed.name.is_none() && changed.category.is_none() && changed.attributes.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![changed.into()])
            }
            ProductCommand::AddProductImage { image_id, asset, view, analysis } => {
                let current = self.editable()?;
                if let Some(existing) = self.images.get(image_id) {
                    if existing.asset == *asset && existing.view == *view {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::rule(format!(
                        "product {} already has an image {image_id}; remove it first or use another id",
                        current.product_id
                    )));
                }
                if let Some((other, _)) = self.images.iter().find(|(_, image)| image.asset.hash == asset.hash)
                {
                    return Err(DomainError::rule(format!(
                        "this file is already attached to product {} as image {other}",
                        current.product_id
                    )));
                }
                if self.images.len() >= MAX_IMAGES {
                    return Err(DomainError::rule(format!(
                        "product {} already has {MAX_IMAGES} images, the most allowed; remove one first",
                        current.product_id
                    )));
                }
                Ok(vec![
                    ProductImageAdded {
                        image_id: image_id.clone(),
                        asset: asset.clone(),
                        view: *view,
                        analysis: analysis.clone(),
                    }
                    .into(),
                ])
            }
            ProductCommand::RemoveProductImage { image_id } => {
                let current = self.editable()?;
                if !self.images.contains_key(image_id) {
                    return Err(DomainError::rule(format!(
                        "product {} has no image {image_id}",
                        current.product_id
                    )));
                }
                Ok(vec![ProductImageRemoved { image_id: image_id.clone() }.into()])
            }
            ProductCommand::ArchiveProduct { reason } => {
                self.existing()?;
                if self.archived {
                    return Ok(vec![]);
                }
                Ok(vec![ProductArchived { reason: reason.clone() }.into()])
            }
            ProductCommand::ImportProduct {
                product_id,
                brand_id,
                sku,
                name,
                category,
                attributes,
                images,
            } => {
                check_attributes(attributes)?;
                let mut events: Vec<ProductEvent> = Vec::new();
                let mut attached: BTreeMap<ImageId, ProductImage> = self.images.clone();
                match &self.details {
                    None => events.push(
                        ProductCreated {
                            product_id: product_id.clone(),
                            brand_id: brand_id.clone(),
                            sku: sku.clone(),
                            name: name.clone(),
                            category: category.clone(),
                            attributes: attributes.clone(),
                        }
                        .into(),
                    ),
                    Some(current) => {
                        let current = if self.archived { self.editable()? } else { current };
                        if current.sku != *sku {
                            return Err(DomainError::rule(format!(
                                "product {} has SKU {}, not {sku}; a catalog row updates the product of its own SKU",
                                current.product_id, current.sku
                            )));
                        }
                        let changed = ProductDetailsUpdated {
                            name: Some(name.clone()).filter(|n| *n != current.name),
                            category: Some(category.clone()).filter(|c| *c != current.category),
                            attributes: Some(attributes.clone()).filter(|a| *a != current.attributes),
                        };
                        if changed.name.is_some()
                            || changed.category.is_some()
                            || changed.attributes.is_some()
                        {
                            events.push(changed.into());
                        }
                    }
                }
                for image in images {
                    // The same file twice (in this row or already attached)
                    // is one image: importing again adds nothing.
                    if attached.values().any(|existing| existing.asset.hash == image.asset.hash) {
                        continue;
                    }
                    if attached.contains_key(&image.image_id) {
                        return Err(DomainError::rule(format!(
                            "product {product_id} already has an image {} showing another file",
                            image.image_id
                        )));
                    }
                    if attached.len() >= MAX_IMAGES {
                        return Err(DomainError::rule(format!(
                            "product {product_id} would have more than {MAX_IMAGES} images, the most allowed"
                        )));
                    }
                    attached.insert(
                        image.image_id.clone(),
                        ProductImage { asset: image.asset.clone(), view: image.view },
                    );
                    events.push(
                        ProductImageAdded {
                            image_id: image.image_id.clone(),
                            asset: image.asset.clone(),
                            view: image.view,
                            analysis: image.analysis.clone(),
                        }
                        .into(),
                    );
                }
                Ok(events)
            }
            ProductCommand::RestoreProduct => {
                let current = self.existing()?;
                if !self.archived {
                    return Err(DomainError::invalid_state(format!(
                        "product {} is not archived",
                        current.product_id
                    )));
                }
                Ok(vec![ProductRestored {}.into()])
            }
        }
    }

    fn evolve(mut self, event: &ProductEvent) -> Self {
        match event {
            ProductEvent::Created(created) => self.details = Some(created.clone()),
            ProductEvent::DetailsUpdated(update) => {
                if let Some(details) = self.details.as_mut() {
                    if let Some(name) = &update.name {
                        details.name = name.clone();
                    }
                    if let Some(category) = &update.category {
                        details.category = category.clone();
                    }
                    if let Some(attributes) = &update.attributes {
                        details.attributes = attributes.clone();
                    }
                }
            }
            ProductEvent::ImageAdded(added) => {
                self.images.insert(
                    added.image_id.clone(),
                    ProductImage { asset: added.asset.clone(), view: added.view },
                );
            }
            ProductEvent::ImageRemoved(removed) => {
                self.images.remove(&removed.image_id);
            }
            ProductEvent::Archived(_) => self.archived = true,
            ProductEvent::Restored(_) => self.archived = false,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{asset, given};

    fn created() -> ProductEvent {
        ProductCreated {
            product_id: ProductId::parse("p1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            sku: Sku::parse("DR-1").expect("sku"),
            name: Name::parse("Linen dress").expect("name"),
            category: Category::parse("dresses").expect("category"),
            attributes: BTreeMap::from([("colour".into(), "black".into())]),
        }
        .into()
    }

    fn create_command() -> ProductCommand {
        let ProductEvent::Created(c) = created() else { unreachable!() };
        ProductCommand::CreateProduct {
            product_id: c.product_id,
            brand_id: c.brand_id,
            sku: c.sku,
            name: c.name,
            category: c.category,
            attributes: c.attributes,
        }
    }

    fn image_added(id: &str, seed: u8) -> ProductEvent {
        ProductImageAdded {
            image_id: ImageId::parse(id).expect("id"),
            asset: asset(seed),
            view: ImageView::Front,
            analysis: None,
        }
        .into()
    }

    fn add_image(id: &str, seed: u8) -> ProductCommand {
        ProductCommand::AddProductImage {
            image_id: ImageId::parse(id).expect("id"),
            asset: asset(seed),
            view: ImageView::Front,
            analysis: None,
        }
    }

    fn import_row(name: &str, seeds: &[u8]) -> ProductCommand {
        let ProductEvent::Created(c) = created() else { unreachable!() };
        ProductCommand::ImportProduct {
            product_id: c.product_id,
            brand_id: c.brand_id,
            sku: c.sku,
            name: Name::parse(name).expect("name"),
            category: c.category,
            attributes: c.attributes,
            images: seeds
                .iter()
                .map(|seed| ImportedImage {
                    image_id: ImageId::parse(format!("img-{seed}")).expect("id"),
                    asset: asset(*seed),
                    view: ImageView::Front,
                    analysis: None,
                })
                .collect(),
        }
    }

    #[test]
    fn importing_a_new_row_creates_the_product_with_its_images_in_one_decision() {
        given::<Product>(&[]).when(&import_row("Linen dress", &[1, 2])).then(&[
            created(),
            image_added("img-1", 1),
            image_added("img-2", 2),
        ]);
    }

    #[test]
    fn importing_the_same_row_again_records_nothing() {
        given::<Product>(&[created(), image_added("img-1", 1)])
            .when(&import_row("Linen dress", &[1]))
            .then(&[]);
    }

    #[test]
    fn importing_a_changed_row_records_only_what_changed() {
        given::<Product>(&[created(), image_added("front", 1)])
            .when(&import_row("Silk dress", &[1, 3]))
            .then(&[
                ProductDetailsUpdated {
                    name: Some(Name::parse("Silk dress").expect("name")),
                    category: None,
                    attributes: None,
                }
                .into(),
                image_added("img-3", 3),
            ]);
    }

    #[test]
    fn importing_into_an_archived_product_is_rejected() {
        given::<Product>(&[created(), ProductArchived { reason: None }.into()])
            .when(&import_row("Linen dress", &[]))
            .then_rejected(|e| e.to_string().contains("archived"));
    }

    #[test]
    fn creating_a_new_product_records_product_created() {
        given::<Product>(&[]).when(&create_command()).then(&[created()]);
    }

    #[test]
    fn creating_a_product_that_exists_is_rejected() {
        given::<Product>(&[created()])
            .when(&create_command())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn creating_a_product_with_too_many_attributes_is_rejected() {
        let mut command = create_command();
        if let ProductCommand::CreateProduct { attributes, .. } = &mut command {
            *attributes = (0..=MAX_ATTRIBUTES).map(|i| (format!("k{i}"), "v".into())).collect();
        }
        given::<Product>(&[]).when(&command).then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn updating_details_records_only_what_changed() {
        let command = ProductCommand::UpdateProductDetails {
            name: Some(Name::parse("Linen dress").expect("name")),
            category: Some(Category::parse("summer").expect("category")),
            attributes: None,
        };
        given::<Product>(&[created()]).when(&command).then(&[ProductDetailsUpdated {
            name: None,
            category: Some(Category::parse("summer").expect("category")),
            attributes: None,
        }
        .into()]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let command = ProductCommand::UpdateProductDetails { name: None, category: None, attributes: None };
        given::<Product>(&[created()]).when(&command).then(&[]);
    }

    #[test]
    fn updating_a_product_that_does_not_exist_is_rejected() {
        let command = ProductCommand::UpdateProductDetails { name: None, category: None, attributes: None };
        given::<Product>(&[]).when(&command).then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn adding_an_image_records_image_added() {
        given::<Product>(&[created()]).when(&add_image("front", 1)).then(&[image_added("front", 1)]);
    }

    #[test]
    fn adding_the_same_image_again_records_nothing() {
        given::<Product>(&[created(), image_added("front", 1)]).when(&add_image("front", 1)).then(&[]);
    }

    #[test]
    fn adding_another_file_under_a_taken_image_id_is_rejected() {
        given::<Product>(&[created(), image_added("front", 1)])
            .when(&add_image("front", 2))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn adding_a_file_already_attached_under_another_id_is_rejected() {
        given::<Product>(&[created(), image_added("front", 1)])
            .when(&add_image("front-2", 1))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("already attached")));
    }

    #[test]
    fn adding_more_than_the_image_limit_is_rejected() {
        let mut history = vec![created()];
        history.extend((0..MAX_IMAGES).map(|i| image_added(&format!("i{i}"), i as u8)));
        given::<Product>(&history)
            .when(&add_image("one-more", 200))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn removing_an_attached_image_records_image_removed() {
        given::<Product>(&[created(), image_added("front", 1)])
            .when(&ProductCommand::RemoveProductImage { image_id: ImageId::parse("front").expect("id") })
            .then(&[ProductImageRemoved { image_id: ImageId::parse("front").expect("id") }.into()]);
    }

    #[test]
    fn removing_an_unknown_image_is_rejected() {
        given::<Product>(&[created()])
            .when(&ProductCommand::RemoveProductImage { image_id: ImageId::parse("nope").expect("id") })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn archiving_records_archived_and_archiving_again_records_nothing() {
        let archive = ProductCommand::ArchiveProduct { reason: None };
        given::<Product>(&[created()]).when(&archive).then(&[ProductArchived { reason: None }.into()]);
        given::<Product>(&[created(), ProductArchived { reason: None }.into()]).when(&archive).then(&[]);
    }

    #[test]
    fn archiving_a_product_that_does_not_exist_is_rejected() {
        given::<Product>(&[])
            .when(&ProductCommand::ArchiveProduct { reason: None })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn an_archived_product_accepts_no_edits() {
        given::<Product>(&[created(), ProductArchived { reason: None }.into()])
            .when(&add_image("front", 1))
            .then_rejected(|e| matches!(e, DomainError::InvalidState(m) if m.contains("restore")));
    }

    #[test]
    fn restoring_an_archived_product_records_restored() {
        given::<Product>(&[created(), ProductArchived { reason: None }.into()])
            .when(&ProductCommand::RestoreProduct)
            .then(&[ProductRestored {}.into()]);
    }

    #[test]
    fn restoring_a_product_that_is_not_archived_is_rejected() {
        given::<Product>(&[created()])
            .when(&ProductCommand::RestoreProduct)
            .then_rejected(|e| matches!(e, DomainError::InvalidState(_)));
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let state = Product::replay(&[created(), image_added("front", 1), image_added("back", 2)]);
        assert_eq!(state.images.len(), 2);
        assert!(!state.archived);
        crate::testing::assert_snapshot_round_trip(&state);
    }
}
