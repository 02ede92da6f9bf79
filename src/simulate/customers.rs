//! Customers changed, added or deleted while the simulator runs, kept beside the generated ones.
//!
//! The generated data stays as it is (reproducible, nothing stored); only what a test changes is
//! held here, so that a test can change a studio while the relay is down and then watch the relay
//! catch up. Every customer answer, by id or in the list, reads through this.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::data::DataSet;

/// What was done to one studio's customers; everything else is as generated.
#[derive(Debug)]
pub(crate) struct CustomerChanges {
    /// Whole records of changed and added customers.
    records: BTreeMap<i64, Value>,
    /// Deleted customers, generated or added.
    deleted: BTreeSet<i64>,
    /// The highest id handed out so far: an added customer never gets a deleted one's id.
    last_id: i64,
}

impl CustomerChanges {
    pub(crate) fn new(data: &DataSet) -> Self {
        Self {
            records: BTreeMap::new(),
            deleted: BTreeSet::new(),
            last_id: *data.customer_ids().end(),
        }
    }

    pub(crate) fn exists(&self, data: &DataSet, id: i64) -> bool {
        !self.deleted.contains(&id)
            && (self.records.contains_key(&id) || data.customer_ids().contains(&id))
    }

    /// The customer as `GET /v1/customers/{id}` answers it.
    pub(crate) fn customer(&self, data: &DataSet, id: i64) -> Option<Value> {
        if self.deleted.contains(&id) {
            return None;
        }
        match self.records.get(&id) {
            Some(record) => Some(record.clone()),
            None => data.customer(id),
        }
    }

    /// Sets `fields` in the customer's record, keeping its id. `false` if there is no such
    /// customer.
    pub(crate) fn update(&mut self, data: &DataSet, id: i64, fields: &Map<String, Value>) -> bool {
        let Some(mut record) = self.customer(data, id) else {
            return false;
        };
        merge(&mut record, fields, id);
        self.records.insert(id, record);
        true
    }

    /// A new customer above every id handed out so far: a generated one for that id with
    /// `fields` set, so that the fields the vendor always sends are there unless overridden.
    pub(crate) fn add(&mut self, data: &DataSet, fields: &Map<String, Value>) -> i64 {
        self.last_id += 1;
        let id = self.last_id;
        let mut record = data.generated_customer(id);
        merge(&mut record, fields, id);
        self.records.insert(id, record);
        id
    }

    /// `false` if there is no such customer (never was, or already deleted).
    pub(crate) fn delete(&mut self, data: &DataSet, id: i64) -> bool {
        if !self.exists(data, id) {
            return false;
        }
        self.records.remove(&id);
        self.deleted.insert(id);
        true
    }
}

fn merge(record: &mut Value, fields: &Map<String, Value>, id: i64) {
    if let Value::Object(record) = record {
        record.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        record.insert("id".to_owned(), id.into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data() -> DataSet {
        DataSet::new("berlin", 42).with_customers(10)
    }

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn untouched_customers_are_the_generated_ones() {
        let (data, changes) = (data(), CustomerChanges::new(&data()));
        for id in 0..=11 {
            assert_eq!(changes.customer(&data, id), data.customer(id), "{id}");
        }
    }

    #[test]
    fn updates_merge_and_keep_the_id() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        assert!(changes.update(&data, 3, &fields(json!({"firstName": "Ada", "id": 99}))));
        let updated = changes.customer(&data, 3).expect("still there");
        assert_eq!(updated["firstName"], "Ada");
        assert_eq!(updated["id"], 3);
        let generated = data.customer(3).expect("generated");
        assert_eq!(updated["lastName"], generated["lastName"]);
        assert!(!changes.update(&data, 11, &Map::new()));
    }

    #[test]
    fn added_customers_get_new_ids_and_deleted_ids_are_not_reused() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        let added = changes.add(&data, &fields(json!({"lastName": "Lovelace"})));
        assert_eq!(added, 11);
        let record = changes.customer(&data, 11).expect("added");
        assert_eq!(record["lastName"], "Lovelace");
        assert_eq!(record["id"], 11);
        assert!(record["status"].is_string() && record["accessRefusal"].is_boolean());

        assert!(changes.delete(&data, 11));
        assert!(!changes.delete(&data, 11));
        assert_eq!(changes.add(&data, &Map::new()), 12);
        assert!(changes.customer(&data, 11).is_none());
        assert!(!changes.update(&data, 11, &Map::new()));
    }

    #[test]
    fn deleted_customers_are_gone() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        assert!(changes.update(&data, 5, &fields(json!({"email": "x@example.com"}))));
        assert!(changes.delete(&data, 5));
        assert!(!changes.exists(&data, 5));
        assert!(changes.customer(&data, 5).is_none());
        assert!(!changes.update(&data, 5, &Map::new()));
        assert!(changes.exists(&data, 4));
    }
}
