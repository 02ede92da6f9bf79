//! A customer record's fingerprint: a digest of its canonical JSON, so a sweep can tell whether
//! a record changed since the last one with 16 bytes a customer on disk instead of the record.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields that change on every read and say nothing about the customer: the vendor signs
/// image URLs for about 15 minutes.
const VOLATILE: &[&str] = &["imageUrl"];

/// The first 16 bytes of SHA-256: a collision between two versions of one customer's record
/// is out of reach, and half the bytes of the whole digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The fingerprint of a record as sinks receive it (after the studio's `[entity.customer]`
    /// selection), leaving out [`VOLATILE`] fields at its top level.
    pub fn of(record: &Value) -> Fingerprint {
        let mut canonical = Vec::with_capacity(1024);
        match record {
            Value::Object(fields) => {
                let kept = fields
                    .iter()
                    .filter(|(name, _)| !VOLATILE.contains(&name.as_str()));
                write_object(kept, &mut canonical);
            }
            other => write_canonical(other, &mut canonical),
        }
        let digest = Sha256::digest(&canonical);
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Fingerprint(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Fingerprint> {
        bytes.try_into().ok().map(Fingerprint)
    }
}

/// JSON with object keys in byte order and no whitespace, whatever order the vendor sent them
/// in: the same record always gives the same bytes.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(fields) => write_object(fields.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Writing a scalar to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_object<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    let mut fields: Vec<_> = fields.collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_image_urls_do_not_count() {
        let a = json!({"id": 1, "firstName": "Ada", "imageUrl": "https://x/1?sig=a",
                       "accessMediums": [{"type": "CARD", "value": "7"}]});
        let b = json!({"accessMediums": [{"value": "7", "type": "CARD"}],
                       "imageUrl": "https://x/1?sig=b", "firstName": "Ada", "id": 1});
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn any_other_change_counts() {
        let base =
            json!({"id": 1, "firstName": "Ada", "tags": [1, 2], "address": {"city": "Berlin"}});
        for changed in [
            json!({"id": 1, "firstName": "Ida", "tags": [1, 2], "address": {"city": "Berlin"}}),
            json!({"id": 1, "firstName": "Ada", "tags": [2, 1], "address": {"city": "Berlin"}}),
            json!({"id": 1, "firstName": "Ada", "tags": [1, 2], "address": {"city": "Bonn"}}),
            json!({"id": 1, "firstName": "Ada", "tags": [1, 2], "address": {"city": "Berlin"}, "x": null}),
            // An image URL below the top level is part of the record.
            json!({"id": 1, "firstName": "Ada", "tags": [1, 2], "address": {"city": "Berlin", "imageUrl": "u"}}),
        ] {
            assert_ne!(
                Fingerprint::of(&base),
                Fingerprint::of(&changed),
                "{changed}"
            );
        }
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let fp = Fingerprint::of(&json!({"id": 3}));
        assert_eq!(Fingerprint::from_slice(&fp.0), Some(fp));
        assert_eq!(Fingerprint::from_slice(&[1, 2]), None);
    }
}
