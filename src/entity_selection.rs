//! Which fields of an Open API answer a studio keeps: `[entity.<family>]` in its tenant file,
//! either `keep = [...]` (only these) or `omit = [...]` (all but these), applied to the answer
//! as it arrives, before anything else sees it, so that personal data a partner does not need
//! never reaches a sink, a log or the admin API.
//!
//! A path is a JSON pointer (`/accessMediums/value`) or dotted (`accessMediums.value`). Where
//! the answer holds a list (contracts, access media), a path applies to every element.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::route::Endpoint;

/// A field path, one name per level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let names: Vec<String> = match text.strip_prefix('/') {
            // RFC 6901 escapes, in the order it prescribes.
            Some(pointer) => pointer
                .split('/')
                .map(|n| n.replace("~1", "/").replace("~0", "~"))
                .collect(),
            None => text.split('.').map(str::to_string).collect(),
        };
        if names.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a field path (a JSON pointer like /address/city or a dotted path like address.city)"
            ));
        }
        Ok(FieldPath(names))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Keep(Vec<FieldPath>),
    Omit(Vec<FieldPath>),
}

impl Selection {
    /// Its name in the tenant file: `keep` or `omit`.
    pub fn kind(&self) -> &'static str {
        match self {
            Selection::Keep(_) => "keep",
            Selection::Omit(_) => "omit",
        }
    }

    pub fn paths(&self) -> &[FieldPath] {
        match self {
            Selection::Keep(paths) | Selection::Omit(paths) => paths,
        }
    }

    pub fn apply(&self, entity: Value) -> Value {
        match self {
            Selection::Omit(paths) => {
                let mut entity = entity;
                for path in paths {
                    omit(&mut entity, path.names());
                }
                entity
            }
            Selection::Keep(paths) => {
                let mut kept = Value::Null;
                for path in paths {
                    keep(&entity, path.names(), &mut kept);
                }
                match (kept, &entity) {
                    // Nothing matched: an empty shape of the same kind, not null (null means
                    // "not found" to a sink).
                    (Value::Null, Value::Array(_)) => Value::Array(Vec::new()),
                    (Value::Null, _) => Value::Object(Map::new()),
                    (kept, _) => kept,
                }
            }
        }
    }
}

/// A studio's selections, by endpoint family; families without one are delivered whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitySelection {
    by_family: HashMap<Endpoint, Selection>,
}

impl EntitySelection {
    pub fn new(by_family: HashMap<Endpoint, Selection>) -> EntitySelection {
        EntitySelection { by_family }
    }

    pub fn apply(&self, family: Endpoint, entity: Value) -> Value {
        match self.by_family.get(&family) {
            Some(selection) => selection.apply(entity),
            None => entity,
        }
    }

    pub fn families(&self) -> impl Iterator<Item = (&Endpoint, &Selection)> {
        self.by_family.iter()
    }
}

/// Whether `path` names something in `sample` (through lists, as applying it would).
pub fn matches(sample: &Value, names: &[String]) -> bool {
    let Some((first, rest)) = names.split_first() else {
        return true;
    };
    match sample {
        Value::Array(items) => items.iter().any(|item| matches(item, names)),
        Value::Object(fields) => fields.get(first).is_some_and(|value| matches(value, rest)),
        _ => false,
    }
}

fn omit(value: &mut Value, names: &[String]) {
    let Some((first, rest)) = names.split_first() else {
        return;
    };
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| omit(item, names)),
        Value::Object(fields) if rest.is_empty() => {
            fields.remove(first);
        }
        Value::Object(fields) => {
            if let Some(inner) = fields.get_mut(first) {
                omit(inner, rest);
            }
        }
        _ => {}
    }
}

/// Copies what `names` reaches in `from` into `into`, building the same shape.
fn keep(from: &Value, names: &[String], into: &mut Value) {
    let Some((first, rest)) = names.split_first() else {
        *into = from.clone();
        return;
    };
    match from {
        Value::Array(items) => {
            if !into.is_array() {
                *into = Value::Array(vec![Value::Null; items.len()]);
            }
            if let Value::Array(kept) = into {
                for (item, slot) in items.iter().zip(kept.iter_mut()) {
                    keep(item, names, slot);
                    if slot.is_null() && item.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                }
            }
        }
        Value::Object(fields) => {
            let Some(inner) = fields.get(first) else {
                return;
            };
            if !into.is_object() {
                *into = Value::Object(Map::new());
            }
            if let Value::Object(kept) = into {
                let mut slot = kept.remove(first).unwrap_or(Value::Null);
                keep(inner, rest, &mut slot);
                // Only what the path reached: a half-matched path leaves nothing, not a null
                // that a sink would read as "has none".
                if !slot.is_null() || (rest.is_empty() && inner.is_null()) {
                    kept.insert(first.clone(), slot);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(texts: &[&str]) -> Vec<FieldPath> {
        texts.iter().map(|t| FieldPath::parse(t).unwrap()).collect()
    }

    fn customer() -> Value {
        json!({"id": 7, "firstName": "Ada", "email": "ada@example.com", "dateOfBirth": "1990-01-01",
               "status": "MEMBER",
               "accessMediums": [{"type": "CARD", "value": "0A1B"}, {"type": "PIN", "value": "9"}]})
    }

    #[test]
    fn pointers_and_dotted_paths_name_the_same_fields() {
        assert_eq!(
            FieldPath::parse("/accessMediums/value").unwrap(),
            FieldPath::parse("accessMediums.value").unwrap()
        );
        assert_eq!(FieldPath::parse("/a~1b").unwrap().names(), ["a/b"]);
        for bad in ["", "a..b", "/", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn omit_drops_fields_also_inside_lists() {
        let out = Selection::Omit(paths(&["email", "/dateOfBirth", "accessMediums.value"]))
            .apply(customer());
        assert_eq!(
            out,
            json!({"id": 7, "firstName": "Ada", "status": "MEMBER",
                   "accessMediums": [{"type": "CARD"}, {"type": "PIN"}]})
        );
    }

    #[test]
    fn keep_builds_the_same_shape_with_only_those_fields() {
        let out = Selection::Keep(paths(&["id", "status", "accessMediums.type"])).apply(customer());
        assert_eq!(
            out,
            json!({"id": 7, "status": "MEMBER",
                   "accessMediums": [{"type": "CARD"}, {"type": "PIN"}]})
        );
        let contracts = json!([{"id": 1, "rateName": "Flex", "iban": "DE00"}, {"id": 2}]);
        let out = Selection::Keep(paths(&["id", "rateName"])).apply(contracts);
        assert_eq!(out, json!([{"id": 1, "rateName": "Flex"}, {"id": 2}]));
        assert_eq!(
            Selection::Keep(paths(&["nothing"])).apply(customer()),
            json!({})
        );
        let half = Selection::Keep(paths(&["id", "firstName.first", "accessMediums.x"]));
        assert_eq!(
            half.apply(customer()),
            json!({"id": 7, "accessMediums": [{}, {}]}),
            "paths that reach nothing keep nothing"
        );
    }

    #[test]
    fn a_path_matches_a_sample_through_lists() {
        let sample = customer();
        assert!(matches(
            &sample,
            FieldPath::parse("accessMediums.value").unwrap().names()
        ));
        assert!(!matches(
            &sample,
            FieldPath::parse("emial").unwrap().names()
        ));
        assert!(!matches(
            &sample,
            FieldPath::parse("email.domain").unwrap().names()
        ));
    }
}
