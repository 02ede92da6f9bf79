//! One page of `GET /v1/customers` and what changed in it since the last sweep.
//!
//! The vendor pages by id: `offset` is the last id seen, and each page holds the customers with
//! the next ids in order. So a page covers a range of ids, and a customer the last sweep stored
//! in that range but missing from the page is gone. That needs no list of all customers in
//! memory, only the stored fingerprints of one range.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::Value;

use super::fingerprint::Fingerprint;

/// A page as the sweep uses it: customers in id order, and the range of ids it covers.
#[derive(Debug)]
pub struct CustomerPage {
    pub customers: Vec<(i64, Value)>,
    /// The last id it covers: the next page starts after it. None on the last page, which
    /// covers every id above the previous page.
    pub covers_up_to: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    #[error("the customer list answer is not {{\"result\": [...], \"hasNext\": bool}}")]
    NotAList,
    #[error("the customer list holds a record without a numeric id")]
    NoId,
    #[error("the customer list is not in id order after id {0}")]
    NotInOrder(i64),
    #[error("the customer list says more follow but moved no further than id {0}")]
    Stuck(i64),
}

impl CustomerPage {
    /// Reads an answer to a request for the ids after `after` (None for the first page).
    pub fn parse(answer: Value, after: Option<i64>) -> Result<CustomerPage, PageError> {
        let Value::Object(mut answer) = answer else {
            return Err(PageError::NotAList);
        };
        let has_next = answer
            .get("hasNext")
            .and_then(Value::as_bool)
            .ok_or(PageError::NotAList)?;
        let Some(Value::Array(records)) = answer.remove("result") else {
            return Err(PageError::NotAList);
        };
        let mut customers = Vec::with_capacity(records.len());
        let mut last = after;
        for record in records {
            let id = record
                .get("id")
                .and_then(Value::as_i64)
                .ok_or(PageError::NoId)?;
            // The range logic needs strictly rising ids: a page out of order would report
            // customers as deleted that are not.
            if last.is_some_and(|last| id <= last) {
                return Err(PageError::NotInOrder(last.unwrap_or(id)));
            }
            last = Some(id);
            customers.push((id, record));
        }
        let covers_up_to = match (has_next, last) {
            (false, _) => None,
            (true, Some(last)) if Some(last) != after => Some(last),
            (true, _) => return Err(PageError::Stuck(after.unwrap_or(0))),
        };
        Ok(CustomerPage {
            customers,
            covers_up_to,
        })
    }

    /// The ids this page speaks for, after `after`.
    pub fn range(&self, after: Option<i64>) -> (Bound<i64>, Bound<i64>) {
        (
            after.map_or(Bound::Unbounded, Bound::Excluded),
            self.covers_up_to.map_or(Bound::Unbounded, Bound::Included),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Unchanged,
    Deleted,
}

impl ChangeKind {
    /// As events (`content.change`) and metrics (`change` label) name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Changed => "changed",
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One customer of the page's range, compared with the last sweep.
#[derive(Debug)]
pub struct Change {
    pub customer: i64,
    pub kind: ChangeKind,
    /// The record, None for `Deleted`.
    pub record: Option<Value>,
    /// The record's fingerprint; for `Deleted`, the one last stored.
    pub fingerprint: Fingerprint,
}

/// Every customer of the range, in id order: those on the page, each with its fingerprint, and
/// those stored for the range but missing from the page, as deleted.
pub fn compare(customers: Vec<(i64, Value)>, stored: &BTreeMap<i64, Fingerprint>) -> Vec<Change> {
    let mut changes = Vec::with_capacity(customers.len());
    let mut present = std::collections::BTreeSet::new();
    for (customer, record) in customers {
        let fingerprint = Fingerprint::of(&record);
        let kind = match stored.get(&customer) {
            None => ChangeKind::Added,
            Some(old) if *old != fingerprint => ChangeKind::Changed,
            Some(_) => ChangeKind::Unchanged,
        };
        present.insert(customer);
        changes.push(Change {
            customer,
            kind,
            record: Some(record),
            fingerprint,
        });
    }
    for (&customer, &fingerprint) in stored {
        if !present.contains(&customer) {
            changes.push(Change {
                customer,
                kind: ChangeKind::Deleted,
                record: None,
                fingerprint,
            });
        }
    }
    changes.sort_by_key(|c| c.customer);
    changes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(ids: &[i64], has_next: bool) -> Value {
        let result: Vec<Value> = ids.iter().map(|id| json!({"id": id, "n": 0})).collect();
        json!({"result": result, "offset": ids.last().map(i64::to_string), "hasNext": has_next})
    }

    #[test]
    fn a_page_covers_up_to_its_last_id_and_the_last_page_everything_above() {
        let first = CustomerPage::parse(page(&[1, 2, 5], true), None).unwrap();
        assert_eq!(first.covers_up_to, Some(5));
        assert_eq!(first.range(None), (Bound::Unbounded, Bound::Included(5)));
        let last = CustomerPage::parse(page(&[7], false), Some(5)).unwrap();
        assert_eq!(last.range(Some(5)), (Bound::Excluded(5), Bound::Unbounded));
        let empty = CustomerPage::parse(page(&[], false), Some(5)).unwrap();
        assert!(empty.customers.is_empty() && empty.covers_up_to.is_none());
    }

    #[test]
    fn answers_that_would_misreport_deletions_are_refused() {
        let parse = |v: Value, after| CustomerPage::parse(v, after).map(|_| ()).unwrap_err();
        assert_eq!(parse(page(&[3, 2], true), None), PageError::NotInOrder(3));
        assert_eq!(parse(page(&[4], true), Some(4)), PageError::NotInOrder(4));
        assert_eq!(parse(page(&[], true), Some(4)), PageError::Stuck(4));
        assert_eq!(
            parse(json!({"result": [{"x": 1}], "hasNext": false}), None),
            PageError::NoId
        );
        assert_eq!(parse(json!([]), None), PageError::NotAList);
        assert_eq!(parse(json!({"result": []}), None), PageError::NotAList);
    }

    #[test]
    fn compares_the_range_with_the_last_sweep() {
        let record = |id: i64, n: i64| (id, json!({"id": id, "n": n}));
        let stored: BTreeMap<i64, Fingerprint> = [(1, 0), (2, 0), (3, 0)]
            .into_iter()
            .map(|(id, n)| (id, Fingerprint::of(&record(id, n).1)))
            .collect();
        let changes = compare(vec![record(1, 0), record(3, 1), record(4, 0)], &stored);
        let kinds: Vec<(i64, ChangeKind)> = changes.iter().map(|c| (c.customer, c.kind)).collect();
        use ChangeKind::*;
        assert_eq!(
            kinds,
            [(1, Unchanged), (2, Deleted), (3, Changed), (4, Added)]
        );
        assert_eq!(changes[1].fingerprint, stored[&2]);
        assert!(changes[1].record.is_none());
    }
}
