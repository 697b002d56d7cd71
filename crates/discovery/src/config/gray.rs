//! Gray release: a value for a subset of instances before it goes to all.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::state::{join_value, split_value};
use super::{ConfigStore, ConfigStoreError, Versioned};

/// Keys under this prefix are reserved: the gray value of `KEY` is stored
/// at `__gray__/KEY`, beside the main value, in the same store (so it is
/// versioned, persisted and watched like any key).
pub const GRAY_PREFIX: &str = "__gray__/";

/// The key that holds `key`'s gray value.
pub fn gray_key(key: &str) -> String {
    format!("{GRAY_PREFIX}{key}")
}

/// The instance a config value is read for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The instance id (as registered).
    pub id: String,
    /// The instance's labels (zone, version, canary, ...).
    pub labels: BTreeMap<String, String>,
}

impl InstanceInfo {
    /// An instance with `id` and no labels.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }
}

/// Which instances a gray value targets: those whose id is listed, and
/// those that carry every listed label (when labels are listed). A selector
/// with neither matches nothing and is refused by [`put_gray`].
///
/// Loads from TOML/JSON (`ids = ["a"]`, `labels = { canary = "true" }`);
/// unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Instance ids that get the gray value.
    #[serde(default)]
    pub ids: BTreeSet<String>,
    /// Labels an instance must all carry (with these values) to get it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Targets the instances with these ids.
    pub fn ids<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Self {
            ids: ids.into_iter().map(Into::into).collect(),
            labels: BTreeMap::new(),
        }
    }

    /// Also targets the instances that carry `name = value` (and every
    /// other listed label).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Whether `instance` gets the gray value.
    pub fn matches(&self, instance: &InstanceInfo) -> bool {
        self.ids.contains(&instance.id)
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| instance.labels.get(k) == Some(v)))
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.labels.is_empty()
    }
}

/// A gray value as stored under [`gray_key`]: JSON
/// `{"selector": {...}, "text": "..."}` (or `"bytes": [..]`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrayImage {
    selector: Selector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<Vec<u8>>,
}

/// A decoded gray value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray {
    /// Who gets it.
    pub selector: Selector,
    /// The value they get.
    pub value: Bytes,
    /// The version of the gray key.
    pub version: u64,
}

impl Gray {
    /// Decodes a stored gray record.
    pub(crate) fn decode(stored: &[u8], version: u64) -> Result<Self, String> {
        let image: GrayImage =
            serde_json::from_slice(stored).map_err(|e| format!("invalid gray record: {e}"))?;
        let value =
            join_value(image.text, image.bytes).map_err(|e| format!("invalid gray record: {e}"))?;
        Ok(Self {
            selector: image.selector,
            value,
            version,
        })
    }
}

/// Stores `value` as the gray value of `key`, for the instances `selector`
/// matches; it replaces any earlier gray value of `key`. Returns the gray
/// key's new version. The main value is unchanged.
pub async fn put_gray(
    store: &dyn ConfigStore,
    key: &str,
    value: Bytes,
    selector: Selector,
) -> Result<u64, ConfigStoreError> {
    if selector.is_empty() {
        return Err(ConfigStoreError::Options(rampart_core::ConfigError::new(
            "selector",
            "must list at least one instance id or label",
        )));
    }
    let (text, bytes) = split_value(&value);
    let image = GrayImage {
        selector,
        text,
        bytes,
    };
    // A selector and a text or byte value always encode.
    let encoded = serde_json::to_vec(&image).unwrap_or_default();
    store.put(&gray_key(key), encoded.into()).await
}

/// The gray value of `key`, if there is one.
pub async fn get_gray(
    store: &dyn ConfigStore,
    key: &str,
) -> Result<Option<Gray>, ConfigStoreError> {
    let gray = gray_key(key);
    match store.get(&gray).await? {
        None => Ok(None),
        Some(v) => Gray::decode(&v.value, v.version)
            .map(Some)
            .map_err(|reason| ConfigStoreError::Decode {
                key: gray,
                version: v.version,
                reason,
            }),
    }
}

/// The value `instance` should use: the gray value of `key` if its
/// selector matches `instance`, the main value otherwise.
pub async fn get_for(
    store: &dyn ConfigStore,
    key: &str,
    instance: &InstanceInfo,
) -> Result<Option<Versioned>, ConfigStoreError> {
    if let Some(gray) = get_gray(store, key).await?
        && gray.selector.matches(instance)
    {
        return Ok(Some(Versioned {
            value: gray.value,
            version: gray.version,
        }));
    }
    store.get(key).await
}

/// Ends the gray release of `key` by making its gray value the main value
/// (for every instance), then removing the gray value. Returns the main
/// value's new version, or `None` if `key` has no gray value.
pub async fn promote_gray(
    store: &dyn ConfigStore,
    key: &str,
) -> Result<Option<u64>, ConfigStoreError> {
    let Some(gray) = get_gray(store, key).await? else {
        return Ok(None);
    };
    let version = store.put(key, gray.value).await?;
    store.delete(&gray_key(key)).await?;
    Ok(Some(version))
}

/// Abandons the gray release of `key`: every instance goes back to the
/// main value. Returns the deletion's version, or `None` if there was no
/// gray value.
pub async fn clear_gray(
    store: &dyn ConfigStore,
    key: &str,
) -> Result<Option<u64>, ConfigStoreError> {
    store.delete(&gray_key(key)).await
}
