//! The vendor's paging of list endpoints: `offset` is the last id the client has seen,
//! `sliceSize` how many to answer, and the answer says where the next slice starts.
//!
//! `{"result": [...], "offset": "<last id>", "hasNext": bool}`, as perfectgym.md describes it.
//! The default slice size is not written down there; 50 is assumed until the vendor says.

use actix_web::web::Query;
use serde_json::{json, Value};

use super::customers::Page;

/// The slice size when the client names none.
pub(crate) const DEFAULT_SLICE_SIZE: usize = 50;
/// The largest slice the vendor answers; more is a 400.
pub(crate) const MAX_SLICE_SIZE: usize = 100;

/// One list request's position and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slice {
    /// Entities with ids above this one; 0 (every id is positive) for the first slice.
    pub after: i64,
    pub size: usize,
}

impl Slice {
    /// Reads `offset` and `sliceSize` from a query string; other parameters are ignored, as the
    /// vendor ignores what it does not know. The error is the 400's message.
    pub(crate) fn parse(query: &str) -> Result<Slice, &'static str> {
        let pairs = Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| "the query string is malformed")?
            .into_inner();
        let single = |name: &str| -> Result<Option<&str>, &'static str> {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect();
            match values.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one)),
                _ => Err("offset and sliceSize may be given once each"),
            }
        };
        let after = match single("offset")? {
            None | Some("") => 0,
            Some(text) => text.parse().map_err(|_| "offset must be an entity id")?,
        };
        let size = match single("sliceSize")? {
            None => DEFAULT_SLICE_SIZE,
            Some(text) => text
                .parse()
                .ok()
                .filter(|n| (1..=MAX_SLICE_SIZE).contains(n))
                .ok_or("sliceSize must be a whole number from 1 to 100")?,
        };
        Ok(Slice { after, size })
    }

    /// The answer for one page. An empty page keeps the client where it was.
    pub(crate) fn answer(self, page: Page) -> Value {
        let last = page
            .customers
            .last()
            .and_then(|c| c["id"].as_i64())
            .unwrap_or(self.after);
        json!({
            "result": page.customers,
            "offset": last.to_string(),
            "hasNext": page.has_next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(after: i64, size: usize) -> Result<Slice, &'static str> {
        Ok(Slice { after, size })
    }

    #[test]
    fn reads_offset_and_slice_size() {
        assert_eq!(Slice::parse(""), slice(0, DEFAULT_SLICE_SIZE));
        assert_eq!(Slice::parse("offset="), slice(0, DEFAULT_SLICE_SIZE));
        assert_eq!(Slice::parse("offset=150&sliceSize=100"), slice(150, 100));
        assert_eq!(Slice::parse("sliceSize=1&other=x"), slice(0, 1));
    }

    #[test]
    fn refuses_what_the_vendor_refuses() {
        for query in [
            "sliceSize=101",
            "sliceSize=0",
            "sliceSize=-1",
            "sliceSize=",
            "sliceSize=ten",
            "offset=abc",
            "offset=1.5",
            "offset=1&offset=2",
            "sliceSize=10&sliceSize=10",
        ] {
            assert!(Slice::parse(query).is_err(), "{query}");
        }
    }

    #[test]
    fn the_answer_points_at_the_last_id() {
        let page = Page {
            customers: vec![json!({"id": 4}), json!({"id": 9})],
            has_next: true,
        };
        let answer = Slice { after: 3, size: 2 }.answer(page);
        assert_eq!(
            answer,
            json!({"result": [{"id": 4}, {"id": 9}], "offset": "9", "hasNext": true})
        );
        let empty = Page {
            customers: vec![],
            has_next: false,
        };
        let answer = Slice { after: 9, size: 2 }.answer(empty);
        assert_eq!(
            answer,
            json!({"result": [], "offset": "9", "hasNext": false})
        );
    }
}
