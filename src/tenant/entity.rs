//! `[entity.<family>]` in a tenant file: which fields of each Open API answer the studio keeps.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::TenantError;
use crate::entity_selection::{EntitySelection, FieldPath, Selection};
use crate::route::Endpoint;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SelectionFile {
    keep: Option<Vec<String>>,
    omit: Option<Vec<String>>,
}

pub(super) fn build(
    raw: BTreeMap<String, SelectionFile>,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<EntitySelection, TenantError> {
    let mut by_family = HashMap::new();
    for (family, selection) in raw {
        let field = format!("entity.{family}");
        let endpoint = Endpoint::ALL
            .into_iter()
            .find(|e| e.family() == family)
            .ok_or_else(|| {
                err(
                    &field,
                    format!("not an answer family; one of {}", families()),
                )
            })?;
        let parse = |list: &str, texts: Vec<String>| {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    FieldPath::parse(text)
                        .map_err(|reason| err(&format!("{field}.{list}[{i}]"), reason))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let selection = match (selection.keep, selection.omit) {
            (Some(keep), None) => Selection::Keep(parse("keep", keep)?),
            (None, Some(omit)) => Selection::Omit(parse("omit", omit)?),
            _ => return Err(err(&field, "set either keep or omit".into())),
        };
        by_family.insert(endpoint, selection);
    }
    Ok(EntitySelection::new(by_family))
}

/// The family names, as `[entity.<family>]` takes them.
fn families() -> String {
    Endpoint::ALL
        .iter()
        .map(|e| e.family())
        .collect::<Vec<_>>()
        .join(", ")
}
