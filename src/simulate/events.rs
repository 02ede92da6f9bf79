//! Webhook notifications as PerfectGym Next sends them, and a realistic mix of them.

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};

use super::data::{
    class_of_slot, first_contract_id, APPOINTMENT_BOOKING_IDS, CLASS_BOOKING_IDS, CLASS_SLOT_IDS,
    CUSTOMER_IDS, EMPLOYEE_IDS, TAX_EXPORT_IDS,
};

/// One notification body as the vendor sends it: one payload element, `content` only when given.
pub fn notification(
    uuid: &str,
    event_type: &str,
    entity_id: i64,
    timestamp_ms: i64,
    content: Option<Value>,
) -> Value {
    let mut element = json!({"timestamp": timestamp_ms, "type": event_type});
    if let Some(content) = content {
        element["content"] = content;
    }
    json!({"entityId": entity_id, "uuid": uuid, "payload": [element]})
}

/// What an event's `entityId` refers to, which decides the id range it is drawn from.
#[derive(Clone, Copy)]
enum Entity {
    Customer,
    ClassBooking,
    ClassSlot,
    Appointment,
    Employee,
    Studio,
    TaxExport,
    /// Ids the Open API simulator has no endpoint for (devices, debt collection runs, ...).
    Opaque,
    /// The vendor sends no meaningful entity; 0 stands in for it.
    Nothing,
}

/// The event-specific `content` object.
#[derive(Clone, Copy)]
enum Content {
    Empty,
    HomeStudio,
    Aggregator,
    Contract,
    IdlePeriod,
    Module,
    ClassSlot,
    AutomaticCheckout,
    DebtCase,
}

/// The vendor's event table with rough real-world frequencies (check-ins dominate, finance
/// events are rare). `UNKNOWN` rows stand for types the vendor adds after this was written.
const EVENTS: &[(&str, u32, Entity, Content)] = &[
    ("CUSTOMER_CREATED", 60, Entity::Customer, Content::Empty),
    ("CUSTOMER_UPDATED", 120, Entity::Customer, Content::Empty),
    ("CUSTOMER_CHECKIN", 120, Entity::Customer, Content::Empty),
    ("CUSTOMER_CHECKOUT", 100, Entity::Customer, Content::Empty),
    ("CUSTOMER_DELETED", 10, Entity::Customer, Content::Empty),
    (
        "CUSTOMER_ACCESS_DISABLED",
        10,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED",
        25,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_ACCESS_MEDIUM_CREATED",
        10,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_ACCESS_MEDIUM_UPDATED",
        5,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_ACCESS_MEDIUM_DELETED",
        5,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_ACCESS_RESTRICTION_CREATED",
        5,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_ACCESS_RESTRICTION_DELETED",
        5,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_CHECKIN_STUDIOS_UPDATED",
        5,
        Entity::Customer,
        Content::Empty,
    ),
    (
        "CUSTOMER_HOME_STUDIO_UPDATED",
        5,
        Entity::Customer,
        Content::HomeStudio,
    ),
    (
        "AGGREGATOR_MEMBER_CREATED",
        10,
        Entity::Customer,
        Content::Aggregator,
    ),
    ("CONTRACT_CREATED", 30, Entity::Customer, Content::Contract),
    ("CONTRACT_UPDATED", 25, Entity::Customer, Content::Contract),
    (
        "CONTRACT_CANCELLED",
        15,
        Entity::Customer,
        Content::Contract,
    ),
    (
        "CONTRACT_IDLE_PERIOD_CREATED",
        8,
        Entity::Customer,
        Content::IdlePeriod,
    ),
    (
        "CONTRACT_IDLE_PERIOD_UPDATED",
        4,
        Entity::Customer,
        Content::IdlePeriod,
    ),
    (
        "CONTRACT_IDLE_PERIOD_CANCELLED",
        3,
        Entity::Customer,
        Content::IdlePeriod,
    ),
    (
        "CONTRACT_ADDITIONAL_MODULE_CREATED",
        6,
        Entity::Customer,
        Content::Module,
    ),
    (
        "CONTRACT_ADDITIONAL_MODULE_UPDATED",
        3,
        Entity::Customer,
        Content::Module,
    ),
    (
        "CONTRACT_ADDITIONAL_MODULE_DELETED",
        2,
        Entity::Customer,
        Content::Module,
    ),
    (
        "CONTRACT_ADDITIONAL_MODULE_CANCELLED",
        2,
        Entity::Customer,
        Content::Module,
    ),
    (
        "CLASS_BOOKING_CREATED",
        70,
        Entity::ClassBooking,
        Content::Empty,
    ),
    (
        "CLASS_BOOKING_UPDATED",
        20,
        Entity::ClassBooking,
        Content::Empty,
    ),
    (
        "CLASS_BOOKING_CANCELLED",
        30,
        Entity::ClassBooking,
        Content::Empty,
    ),
    (
        "CLASS_SLOT_UPDATED",
        20,
        Entity::ClassSlot,
        Content::ClassSlot,
    ),
    (
        "CLASS_SLOT_CANCELLED",
        8,
        Entity::ClassSlot,
        Content::ClassSlot,
    ),
    (
        "APPOINTMENT_BOOKING_CREATED",
        30,
        Entity::Appointment,
        Content::Empty,
    ),
    (
        "APPOINTMENT_BOOKING_UPDATED",
        10,
        Entity::Appointment,
        Content::Empty,
    ),
    (
        "APPOINTMENT_BOOKING_CANCELLED",
        12,
        Entity::Appointment,
        Content::Empty,
    ),
    ("EMPLOYEE_CREATED", 5, Entity::Employee, Content::Empty),
    ("EMPLOYEE_UPDATED", 10, Entity::Employee, Content::Empty),
    ("EMPLOYEE_DELETED", 3, Entity::Employee, Content::Empty),
    ("DEVICE_CREATED", 3, Entity::Opaque, Content::Empty),
    (
        "STUDIO_OPENING_HOURS_UPDATED",
        5,
        Entity::Studio,
        Content::Empty,
    ),
    (
        "ADDITIONAL_INFORMATION_FIELDS_UPDATED",
        3,
        Entity::Studio,
        Content::Empty,
    ),
    (
        "AUTOMATIC_CUSTOMER_CHECKOUT",
        5,
        Entity::Studio,
        Content::AutomaticCheckout,
    ),
    (
        "FINANCE_DEBT_COLLECTION_RUN_CREATED",
        3,
        Entity::Opaque,
        Content::Empty,
    ),
    (
        "FINANCE_DEBT_COLLECTION_CASE_UPDATED",
        3,
        Entity::Opaque,
        Content::DebtCase,
    ),
    (
        "FINANCE_DEBT_COLLECTION_CONFIGURATION_UPDATED",
        1,
        Entity::Nothing,
        Content::Empty,
    ),
    (
        "TAX_ADVISOR_EXPORT_CREATED",
        4,
        Entity::TaxExport,
        Content::Empty,
    ),
    (
        "CUSTOMER_LOYALTY_POINTS_UPDATED",
        4,
        Entity::Customer,
        Content::Empty,
    ),
    ("VOUCHER_REDEEMED", 3, Entity::Opaque, Content::Empty),
    (
        "CLASS_WAITING_LIST_PROMOTED",
        3,
        Entity::ClassBooking,
        Content::Empty,
    ),
];

/// Share of entity ids drawn just past the generated range, so the relay sees some 404s.
const MISSING_SHARE: f64 = 0.05;

/// A realistic random event: (type, entityId, content), ids mostly inside the Open API data.
pub fn random_event(rng: &mut impl Rng) -> (String, i64, Option<Value>) {
    let total: u32 = EVENTS.iter().map(|e| e.1).sum();
    let mut roll = rng.gen_range(0..total);
    let mut chosen = &EVENTS[0];
    for event in EVENTS {
        if roll < event.1 {
            chosen = event;
            break;
        }
        roll -= event.1;
    }
    let (event_type, _, entity, content) = *chosen;
    let entity_id = match entity {
        Entity::Customer => id_in(rng, CUSTOMER_IDS),
        Entity::ClassBooking => id_in(rng, CLASS_BOOKING_IDS),
        Entity::ClassSlot => id_in(rng, CLASS_SLOT_IDS),
        Entity::Appointment => id_in(rng, APPOINTMENT_BOOKING_IDS),
        Entity::Employee => id_in(rng, EMPLOYEE_IDS),
        Entity::TaxExport => id_in(rng, TAX_EXPORT_IDS),
        Entity::Studio => rng.gen_range(1_000_000..=999_999_999),
        Entity::Opaque => rng.gen_range(1..=100_000),
        Entity::Nothing => 0,
    };
    let content = match content {
        Content::Empty => None,
        Content::HomeStudio => Some(json!({
            "sourceStudioId": rng.gen_range(1_000_000..=999_999_999_i64),
            "targetStudioId": rng.gen_range(1_000_000..=999_999_999_i64),
        })),
        Content::Aggregator => Some(json!({"aggregatorId": rng.gen_range(1..=5)})),
        Content::Contract => Some(json!({"contractId": first_contract_id(entity_id)})),
        Content::IdlePeriod => Some(json!({
            "contractId": first_contract_id(entity_id),
            "idlePeriodId": rng.gen_range(1..=10_000),
        })),
        Content::Module => Some(json!({
            "contractId": first_contract_id(entity_id),
            "moduleContractId": rng.gen_range(1..=10_000),
        })),
        Content::ClassSlot => Some(json!({"classId": class_of_slot(entity_id)})),
        Content::AutomaticCheckout => {
            let now = now_ms();
            let checkouts: Vec<Value> = (0..rng.gen_range(1..=5))
                .map(|_| {
                    json!({
                        "customerId": rng.gen_range(CUSTOMER_IDS),
                        "checkoutTime": now - rng.gen_range(0..60_000),
                    })
                })
                .collect();
            Some(json!({"checkouts": checkouts}))
        }
        Content::DebtCase => Some(json!({"collectionCaseId": rng.gen_range(1..=100_000)})),
    };
    (event_type.to_owned(), entity_id, content)
}

fn id_in(rng: &mut impl Rng, range: RangeInclusive<i64>) -> i64 {
    if rng.gen_bool(MISSING_SHARE) {
        range.end() + rng.gen_range(1..=100)
    } else {
        rng.gen_range(range)
    }
}

/// Milliseconds since the Unix epoch, as the vendor stamps events.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::data::DataSet;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn notification_has_the_vendor_shape() {
        let n = notification(
            "u-1",
            "CONTRACT_CREATED",
            7,
            1_642_779_144_176,
            Some(json!({"contractId": 71})),
        );
        assert_eq!(n["entityId"], 7);
        assert_eq!(n["uuid"], "u-1");
        assert_eq!(n["payload"][0]["timestamp"], 1_642_779_144_176_i64);
        assert_eq!(n["payload"][0]["type"], "CONTRACT_CREATED");
        assert_eq!(n["payload"][0]["content"]["contractId"], 71);
        let bare = notification("u-2", "CUSTOMER_CREATED", 1, 0, None);
        assert!(bare["payload"][0].get("content").is_none());
    }

    #[test]
    fn random_events_cover_the_mix_and_mostly_exist() {
        let mut rng = StdRng::seed_from_u64(7);
        let data = DataSet::new("s", 1);
        let mut types = HashSet::new();
        let (mut customers, mut found) = (0, 0);
        for _ in 0..5_000 {
            let (ty, id, content) = random_event(&mut rng);
            if ty.starts_with("CLASS_SLOT_") {
                let class = content.as_ref().and_then(|c| c["classId"].as_i64());
                assert_eq!(class, Some(class_of_slot(id)));
            }
            if ty.starts_with("CONTRACT_") {
                let contract = content.as_ref().and_then(|c| c["contractId"].as_i64());
                assert_eq!(contract, Some(first_contract_id(id)));
            }
            if ty == "CUSTOMER_UPDATED" {
                customers += 1;
                found += usize::from(data.customer(id).is_some());
            }
            types.insert(ty);
        }
        for expected in [
            "CUSTOMER_CREATED",
            "CUSTOMER_DELETED",
            "CUSTOMER_ACCESS_DISABLED",
            "CONTRACT_CREATED",
            "CLASS_BOOKING_CREATED",
            "CLASS_SLOT_UPDATED",
            "APPOINTMENT_BOOKING_CREATED",
            "EMPLOYEE_UPDATED",
            "STUDIO_OPENING_HOURS_UPDATED",
            "VOUCHER_REDEEMED",
        ] {
            assert!(types.contains(expected), "{expected} never drawn");
        }
        let share = found as f64 / customers as f64;
        assert!((0.9..1.0).contains(&share), "found share {share}");
    }

    #[test]
    fn contract_events_point_at_an_existing_contract() {
        let data = DataSet::new("s", 3);
        let contracts = data.contracts(12).expect("contracts");
        assert_eq!(contracts[0]["id"], first_contract_id(12));
    }
}
