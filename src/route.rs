//! Which Open API request answers "what is the current state" for an event (the vendor's table
//! in perfectgym.md). Decided once, at intake, and stored with the queued event, so that the
//! worker, the budget and the store read a field instead of looking into the event again.

use serde::{Deserialize, Serialize};

/// An Open API endpoint: the unit the vendor's rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Customer,
    CommunicationPreferences,
    Contracts,
    ClassBooking,
    ClassSlot,
    AppointmentBooking,
    Employee,
    StudioInformation,
    TaxAdvisorExport,
    /// `GET /v1/customers`, the paged list a reconcile sweep reads; no event needs it.
    CustomerList,
}

impl Endpoint {
    /// The endpoints events need, each a family of `[entity.<family>]`.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Customer,
        Endpoint::CommunicationPreferences,
        Endpoint::Contracts,
        Endpoint::ClassBooking,
        Endpoint::ClassSlot,
        Endpoint::AppointmentBooking,
        Endpoint::Employee,
        Endpoint::StudioInformation,
        Endpoint::TaxAdvisorExport,
    ];

    /// The path template, as metrics, the status page and the saved budget name it.
    pub const fn template(self) -> &'static str {
        match self {
            Endpoint::Customer => "/v1/customers/{id}",
            Endpoint::CommunicationPreferences => {
                "/v1/communications/{id}/communication-preferences"
            }
            Endpoint::Contracts => "/v1/customers/{id}/contracts",
            Endpoint::ClassBooking => "/v1/classes/booking/{id}",
            Endpoint::ClassSlot => "/v1/classes/{classId}/slots/{id}",
            Endpoint::AppointmentBooking => "/v1/appointments/booking/{id}",
            Endpoint::Employee => "/v1/employees/{id}",
            Endpoint::StudioInformation => "/v1/studios/information",
            Endpoint::TaxAdvisorExport => "/v1/taxadvisor/exports/{id}",
            Endpoint::CustomerList => "/v1/customers",
        }
    }

    /// Its name in `[entity.<family>]` and in JSON: `customer`, `contracts`, ...
    pub fn family(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn of_type(t: &str) -> Option<Endpoint> {
        Some(match t {
            "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED" => Endpoint::CommunicationPreferences,
            "AGGREGATOR_MEMBER_CREATED" => Endpoint::Customer,
            "EMPLOYEE_CREATED" | "EMPLOYEE_UPDATED" => Endpoint::Employee,
            "STUDIO_OPENING_HOURS_UPDATED" => Endpoint::StudioInformation,
            "TAX_ADVISOR_EXPORT_CREATED" => Endpoint::TaxAdvisorExport,
            t if t.starts_with("CUSTOMER_") => Endpoint::Customer,
            t if t.starts_with("CONTRACT_") => Endpoint::Contracts,
            t if t.starts_with("CLASS_BOOKING_") => Endpoint::ClassBooking,
            t if t.starts_with("CLASS_SLOT_") => Endpoint::ClassSlot,
            t if t.starts_with("APPOINTMENT_BOOKING_") => Endpoint::AppointmentBooking,
            _ => return None,
        })
    }
}

/// Every endpoint template the studio's budget counts: those [`route`] can produce, and the
/// customer list.
pub const ENDPOINTS: [&str; 10] = {
    let mut templates = [""; 10];
    let mut i = 0;
    while i < Endpoint::ALL.len() {
        templates[i] = Endpoint::ALL[i].template();
        i += 1;
    }
    templates[i] = Endpoint::CustomerList.template();
    templates
};

/// One concrete Open API request. Two events with equal requests can share one answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    pub endpoint: Endpoint,
    pub path: String,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GET {}", self.path)
    }
}

/// Why an event needs no request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    Deleted,
    AccessDisabled,
    NoEntityId,
    NoClassId,
    NoEndpoint,
}

impl Skip {
    /// The reason sinks see in `enrichment.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Deleted => "the entity is deleted",
            Skip::AccessDisabled => "the customer's data can no longer be requested",
            Skip::NoEntityId => "the notification has no entityId",
            Skip::NoClassId => "content.classId is missing",
            Skip::NoEndpoint => "no Open API endpoint for this event type",
        }
    }
}

/// What enrichment needs for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Fetch(Request),
    Skip(Skip),
}

/// Whether an event is one of `customer`'s own: its type has a customer id as its `entityId`
/// by the vendor's table (every `CUSTOMER_*`, `CONTRACT_*` and `AGGREGATOR_MEMBER_CREATED`,
/// fetched or not), and that id is theirs.
pub fn is_about_customer(event_type: &str, entity_id: Option<i64>, customer: i64) -> bool {
    entity_id == Some(customer)
        && (event_type.starts_with("CUSTOMER_")
            || event_type.starts_with("CONTRACT_")
            || event_type == "AGGREGATOR_MEMBER_CREATED")
}

/// Maps an event's type, entity and `content.classId` to its request.
pub fn route(t: &str, entity_id: Option<i64>, class_id: Option<i64>) -> Route {
    match t {
        "CUSTOMER_DELETED" | "EMPLOYEE_DELETED" => return Route::Skip(Skip::Deleted),
        "CUSTOMER_ACCESS_DISABLED" => return Route::Skip(Skip::AccessDisabled),
        _ => {}
    }
    let Some(endpoint) = Endpoint::of_type(t) else {
        return Route::Skip(Skip::NoEndpoint);
    };
    let Some(id) = entity_id else {
        return Route::Skip(Skip::NoEntityId);
    };
    let path = match endpoint {
        Endpoint::Customer => format!("/v1/customers/{id}"),
        Endpoint::CommunicationPreferences => {
            format!("/v1/communications/{id}/communication-preferences")
        }
        Endpoint::Contracts => format!("/v1/customers/{id}/contracts"),
        Endpoint::ClassBooking => format!("/v1/classes/booking/{id}"),
        Endpoint::ClassSlot => match class_id {
            Some(class_id) => format!("/v1/classes/{class_id}/slots/{id}"),
            None => return Route::Skip(Skip::NoClassId),
        },
        Endpoint::AppointmentBooking => format!("/v1/appointments/booking/{id}"),
        Endpoint::Employee => format!("/v1/employees/{id}"),
        Endpoint::StudioInformation => "/v1/studios/information".into(),
        Endpoint::TaxAdvisorExport => format!("/v1/taxadvisor/exports/{id}"),
        Endpoint::CustomerList => return Route::Skip(Skip::NoEndpoint),
    };
    Route::Fetch(Request { endpoint, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(t: &str, class_id: Option<i64>) -> Option<String> {
        match route(t, Some(7), class_id) {
            Route::Fetch(request) => Some(request.path),
            Route::Skip(_) => None,
        }
    }

    #[test]
    fn follows_the_vendor_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("CUSTOMER_CREATED", Some("/v1/customers/7")),
            ("CUSTOMER_CHECKIN", Some("/v1/customers/7")),
            ("CUSTOMER_ACCESS_MEDIUM_DELETED", Some("/v1/customers/7")),
            ("AGGREGATOR_MEMBER_CREATED", Some("/v1/customers/7")),
            (
                "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED",
                Some("/v1/communications/7/communication-preferences"),
            ),
            (
                "CONTRACT_IDLE_PERIOD_CREATED",
                Some("/v1/customers/7/contracts"),
            ),
            ("CLASS_BOOKING_CANCELLED", Some("/v1/classes/booking/7")),
            (
                "APPOINTMENT_BOOKING_CREATED",
                Some("/v1/appointments/booking/7"),
            ),
            ("EMPLOYEE_UPDATED", Some("/v1/employees/7")),
            (
                "STUDIO_OPENING_HOURS_UPDATED",
                Some("/v1/studios/information"),
            ),
            (
                "TAX_ADVISOR_EXPORT_CREATED",
                Some("/v1/taxadvisor/exports/7"),
            ),
            ("CUSTOMER_DELETED", None),
            ("CUSTOMER_ACCESS_DISABLED", None),
            ("EMPLOYEE_DELETED", None),
            ("DEVICE_CREATED", None),
            ("FINANCE_DEBT_COLLECTION_RUN_CREATED", None),
            ("SOMETHING_NEW", None),
        ];
        for (t, expected) in cases {
            assert_eq!(path(t, None).as_deref(), *expected, "{t}");
        }
        assert_eq!(
            path("CLASS_SLOT_UPDATED", Some(3)).as_deref(),
            Some("/v1/classes/3/slots/7")
        );
        assert_eq!(
            route("CLASS_SLOT_UPDATED", Some(7), None),
            Route::Skip(Skip::NoClassId)
        );
        assert_eq!(
            route("CUSTOMER_UPDATED", None, None),
            Route::Skip(Skip::NoEntityId)
        );
    }

    #[test]
    fn every_endpoint_has_its_template_listed() {
        for (endpoint, template) in Endpoint::ALL.iter().zip(ENDPOINTS) {
            assert_eq!(endpoint.template(), template);
        }
    }
}
