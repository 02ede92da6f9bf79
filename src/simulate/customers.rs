//! Customers changed, added or deleted while the simulator runs, kept beside the generated ones.
//!
//! The generated data stays as it is (reproducible, nothing stored); only what a test or a person
//! (through the routes in [`super::control`]) changes is held here, so that a studio can change
//! while the relay is down and the relay be watched catching up. Every customer answer, by id or
//! in the list, reads through this.

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

/// One page of the customer list.
#[derive(Debug, PartialEq)]
pub(crate) struct Page {
    pub customers: Vec<Value>,
    pub has_next: bool,
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

    /// Sets `fields` in the customer's record, keeping its id, and returns the new record;
    /// `None` if there is no such customer.
    pub(crate) fn update(
        &mut self,
        data: &DataSet,
        id: i64,
        fields: &Map<String, Value>,
    ) -> Option<Value> {
        let mut record = self.customer(data, id)?;
        merge(&mut record, fields, id);
        self.records.insert(id, record.clone());
        Some(record)
    }

    /// A new customer above every id handed out so far: a generated one for that id with
    /// `fields` set, so that the fields the vendor always sends are there unless overridden.
    /// Returns its id and record.
    pub(crate) fn add(&mut self, data: &DataSet, fields: &Map<String, Value>) -> (i64, Value) {
        self.last_id += 1;
        let id = self.last_id;
        let mut record = data.generated_customer(id);
        merge(&mut record, fields, id);
        self.records.insert(id, record.clone());
        (id, record)
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

    /// Up to `size` customers with ids above `after`, in id order.
    pub(crate) fn page(&self, data: &DataSet, after: i64, size: usize) -> Page {
        let generated = data.customer_ids();
        let from = after.saturating_add(1);
        let generated_ids = (from.max(*generated.start())..=*generated.end())
            .filter(|id| !self.deleted.contains(id));
        // Added customers all lie above the generated ones.
        let added_ids = self
            .records
            .range(from.max(generated.end().saturating_add(1))..)
            .map(|(id, _)| *id);
        let mut ids = generated_ids.chain(added_ids);
        let customers: Vec<Value> = ids
            .by_ref()
            .take(size)
            .filter_map(|id| self.customer(data, id))
            .collect();
        Page {
            customers,
            has_next: ids.next().is_some(),
        }
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

    fn ids(page: &Page) -> Vec<i64> {
        page.customers
            .iter()
            .map(|c| c["id"].as_i64().expect("an id"))
            .collect()
    }

    #[test]
    fn untouched_customers_are_the_generated_ones() {
        let (data, changes) = (data(), CustomerChanges::new(&data()));
        for id in 0..=11 {
            assert_eq!(changes.customer(&data, id), data.customer(id), "{id}");
        }
        let page = changes.page(&data, 0, 100);
        assert_eq!(ids(&page), (1..=10).collect::<Vec<_>>());
        assert!(!page.has_next);
    }

    #[test]
    fn pages_follow_ids_and_know_whether_more_follow() {
        let (data, changes) = (data(), CustomerChanges::new(&data()));
        let first = changes.page(&data, i64::MIN, 4);
        assert_eq!((ids(&first), first.has_next), (vec![1, 2, 3, 4], true));
        let last = changes.page(&data, 6, 4);
        assert_eq!((ids(&last), last.has_next), (vec![7, 8, 9, 10], false));
        let past = changes.page(&data, 10, 4);
        assert_eq!((ids(&past), past.has_next), (vec![], false));
        assert_eq!(ids(&changes.page(&data, i64::MAX, 4)), Vec::<i64>::new());
    }

    #[test]
    fn updates_merge_and_keep_the_id() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        let answered = changes.update(&data, 3, &fields(json!({"firstName": "Ada", "id": 99})));
        let updated = changes.customer(&data, 3).expect("still there");
        assert_eq!(answered.as_ref(), Some(&updated));
        assert_eq!(updated["firstName"], "Ada");
        assert_eq!(updated["id"], 3);
        let generated = data.customer(3).expect("generated");
        assert_eq!(updated["lastName"], generated["lastName"]);
        assert_eq!(changes.page(&data, 2, 1).customers, vec![updated]);
        assert!(changes.update(&data, 11, &Map::new()).is_none());
    }

    #[test]
    fn added_customers_come_after_the_rest_and_deleted_ids_are_not_reused() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        let (added, answered) = changes.add(&data, &fields(json!({"lastName": "Lovelace"})));
        assert_eq!(added, 11);
        let record = changes.customer(&data, 11).expect("added");
        assert_eq!(answered, record);
        assert_eq!(record["lastName"], "Lovelace");
        assert_eq!(record["id"], 11);
        assert!(record["status"].is_string() && record["accessRefusal"].is_boolean());

        assert!(changes.delete(&data, 11));
        assert!(!changes.delete(&data, 11));
        assert_eq!(changes.add(&data, &Map::new()).0, 12);
        assert!(changes.customer(&data, 11).is_none());
        assert!(changes.update(&data, 11, &Map::new()).is_none());
        let page = changes.page(&data, 9, 100);
        assert_eq!(ids(&page), vec![10, 12]);
    }

    #[test]
    fn deleted_customers_are_gone_from_both_answers() {
        let data = data();
        let mut changes = CustomerChanges::new(&data);
        assert!(changes
            .update(&data, 5, &fields(json!({"email": "x@example.com"})))
            .is_some());
        assert!(changes.delete(&data, 5));
        assert!(changes.delete(&data, 1));
        assert!(!changes.exists(&data, 5));
        assert!(changes.customer(&data, 5).is_none());
        assert!(changes.update(&data, 5, &Map::new()).is_none());
        let page = changes.page(&data, 0, 3);
        assert_eq!((ids(&page), page.has_next), (vec![2, 3, 4], true));
        let page = changes.page(&data, 4, 100);
        assert_eq!(ids(&page), vec![6, 7, 8, 9, 10]);
        // Deleting everything after the page leaves nothing to follow.
        for id in 9..=10 {
            assert!(changes.delete(&data, id));
        }
        let page = changes.page(&data, 4, 3);
        assert_eq!((ids(&page), page.has_next), (vec![6, 7, 8], false));
    }
}
