//! The payload value: JSON that may carry binary blobs at any depth.

use std::collections::BTreeMap;

use bytes::Bytes;

/// A Socket.IO payload value: a JSON value in which binary blobs may appear at any depth.
///
/// Binary-free data, which is nearly all traffic, stays a plain [`serde_json::Value`] in
/// [`Value::Json`]: decoding and encoding it costs nothing beyond serde_json itself, and handlers
/// take it out with [`Value::into_json`] or [`Value::as_json`]. Only the arrays and objects on
/// the path to a blob use the [`Value::Array`] and [`Value::Object`] nodes.
///
/// Decoded values are in canonical form: a node is `Array` or `Object` only if a blob lies
/// somewhere below it. Values built by hand need not be; equality compares what the values
/// mean, so `Array([Json(1)])` equals `Json([1])`. [`Value::array`] and [`Value::object`]
/// build canonical values.
#[derive(Debug, Clone)]
pub enum Value {
    /// JSON without binary data.
    Json(serde_json::Value),
    /// A binary blob (a `Buffer`/`ArrayBuffer` on the JavaScript side).
    Binary(Bytes),
    /// An array with at least one blob inside it (in canonical form).
    Array(Vec<Value>),
    /// An object with at least one blob inside it (in canonical form).
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// Builds an array, as plain [`Value::Json`] when no element carries binary data.
    pub fn array(items: impl IntoIterator<Item = Value>) -> Self {
        Self::collapse_array(items.into_iter().map(Value::canonical).collect())
    }

    /// Builds an object, as plain [`Value::Json`] when no member carries binary data.
    pub fn object(members: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self::collapse_object(
            members
                .into_iter()
                .map(|(key, value)| (key, value.canonical()))
                .collect(),
        )
    }

    /// An array of values already in canonical form, collapsed to JSON if binary-free.
    pub(crate) fn collapse_array(items: Vec<Value>) -> Self {
        if items.iter().all(|item| matches!(item, Value::Json(_))) {
            Value::Json(serde_json::Value::Array(
                items
                    .into_iter()
                    .filter_map(Value::into_json_leaf)
                    .collect(),
            ))
        } else {
            Value::Array(items)
        }
    }

    /// An object of values already in canonical form, collapsed to JSON if binary-free.
    pub(crate) fn collapse_object(members: BTreeMap<String, Value>) -> Self {
        if members
            .values()
            .all(|value| matches!(value, Value::Json(_)))
        {
            Value::Json(serde_json::Value::Object(
                members
                    .into_iter()
                    .filter_map(|(key, value)| Some((key, value.into_json_leaf()?)))
                    .collect(),
            ))
        } else {
            Value::Object(members)
        }
    }

    /// Whether a binary blob lies anywhere in this value.
    pub fn has_binary(&self) -> bool {
        self.binary_count() > 0
    }

    /// How many binary blobs this value carries (each becomes one attachment on the wire).
    pub fn binary_count(&self) -> usize {
        match self {
            Value::Json(_) => 0,
            Value::Binary(_) => 1,
            Value::Array(items) => items.iter().map(Value::binary_count).sum(),
            Value::Object(members) => members.values().map(Value::binary_count).sum(),
        }
    }

    /// The JSON, if this value is a [`Value::Json`] (always so for binary-free decoded data).
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Value::Json(json) => Some(json),
            _ => None,
        }
    }

    /// The blob, if this value is one.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Value::Binary(data) => Some(data),
            _ => None,
        }
    }

    /// Converts a binary-free value into JSON; gives the value back if it carries binary data.
    pub fn into_json(self) -> Result<serde_json::Value, Value> {
        match self.canonical() {
            Value::Json(json) => Ok(json),
            other => Err(other),
        }
    }

    /// The same value in canonical form.
    pub fn canonical(self) -> Self {
        match self {
            Value::Array(items) => Value::array(items),
            Value::Object(members) => Value::object(members),
            leaf => leaf,
        }
    }

    fn into_json_leaf(self) -> Option<serde_json::Value> {
        match self {
            Value::Json(json) => Some(json),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Json(a), Value::Json(b)) => a == b,
            (Value::Binary(a), Value::Binary(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            (mixed, Value::Json(json)) | (Value::Json(json), mixed) => eq_json(mixed, json),
            _ => false,
        }
    }
}

impl Eq for Value {}

/// Compares a possibly non-canonical value with plain JSON.
fn eq_json(value: &Value, json: &serde_json::Value) -> bool {
    match (value, json) {
        (Value::Json(a), b) => a == b,
        (Value::Binary(_), _) => false,
        (Value::Array(items), serde_json::Value::Array(json_items)) => {
            items.len() == json_items.len()
                && items.iter().zip(json_items).all(|(a, b)| eq_json(a, b))
        }
        (Value::Object(members), serde_json::Value::Object(json_members)) => {
            members.len() == json_members.len()
                && members
                    .iter()
                    .all(|(key, a)| json_members.get(key).is_some_and(|b| eq_json(a, b)))
        }
        _ => false,
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        Value::Json(json)
    }
}

impl From<Bytes> for Value {
    fn from(data: Bytes) -> Self {
        Value::Binary(data)
    }
}

impl From<Vec<u8>> for Value {
    fn from(data: Vec<u8>) -> Self {
        Value::Binary(Bytes::from(data))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Json(serde_json::Value::String(text.to_owned()))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Json(serde_json::Value::String(text))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn blob() -> Value {
        Value::Binary(Bytes::from_static(&[1, 2]))
    }

    #[test]
    fn builders_produce_canonical_values() {
        assert_eq!(
            Value::array([Value::from(json!(1)), Value::from("a")]).as_json(),
            Some(&json!([1, "a"]))
        );
        let mixed = Value::array([Value::from(json!(1)), blob()]);
        assert!(matches!(&mixed, Value::Array(items) if items.len() == 2));
        let object = Value::object([("a".to_owned(), Value::array([Value::from(json!(2))]))]);
        assert_eq!(object.as_json(), Some(&json!({"a": [2]})));
    }

    #[test]
    fn equality_is_semantic() {
        let non_canonical = Value::Array(vec![
            Value::Json(json!(1)),
            Value::Object(BTreeMap::from([("k".to_owned(), Value::Json(json!(null)))])),
        ]);
        assert_eq!(non_canonical, Value::Json(json!([1, {"k": null}])));
        assert_eq!(Value::Json(json!([1, {"k": null}])), non_canonical);
        assert_ne!(non_canonical, Value::Json(json!([1, {"k": 0}])));
        assert_ne!(non_canonical, Value::Json(json!([1])));
        assert_ne!(Value::Array(vec![blob()]), Value::Json(json!([[1, 2]])));
        assert_eq!(Value::Array(vec![blob()]), Value::Array(vec![blob()]));
    }

    #[test]
    fn counts_and_extracts() {
        let value = Value::object([
            ("x".to_owned(), blob()),
            (
                "y".to_owned(),
                Value::array([blob(), Value::from(json!(3))]),
            ),
        ]);
        assert_eq!(value.binary_count(), 2);
        assert!(value.has_binary());
        assert!(value.clone().into_json().is_err());
        assert_eq!(
            Value::Array(vec![Value::Json(json!(1))]).into_json(),
            Ok(json!([1]))
        );
        assert_eq!(blob().as_binary().map(|b| b.len()), Some(2));
    }
}
