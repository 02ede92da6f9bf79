//! The Open API paths the relay fetches from, matched by hand so that the route template can be
//! recorded and rate-limited as the vendor counts it: per endpoint, not per URL.

/// A recognised endpoint with its ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The paged list of all customers; its query is read by [`super::slice`].
    CustomerList,
    Customer(i64),
    CommunicationPreferences(i64),
    Contracts(i64),
    ClassBooking(i64),
    ClassSlot {
        class_id: i64,
        slot_id: i64,
    },
    AppointmentBooking(i64),
    Employee(i64),
    StudioInformation,
    TaxAdvisorExport(i64),
}

/// The template of one customer, which the control routes of [`super::control`] also write to.
pub(crate) const CUSTOMER_TEMPLATE: &str = "/v1/customers/{id}";

/// A path that fits a template; `route` is `None` when an id is not a number (the vendor's 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Matched {
    pub template: &'static str,
    pub route: Option<Route>,
}

/// Matches a path below the studio prefix, e.g. `/v1/customers/17`.
pub(crate) fn match_path(path: &str) -> Option<Matched> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let id = |s: &str| s.parse::<i64>().ok();
    let (template, route) = match segments.as_slice() {
        ["v1", "customers"] => ("/v1/customers", Some(Route::CustomerList)),
        ["v1", "customers", c] => (CUSTOMER_TEMPLATE, id(c).map(Route::Customer)),
        ["v1", "communications", c, "communication-preferences"] => (
            "/v1/communications/{id}/communication-preferences",
            id(c).map(Route::CommunicationPreferences),
        ),
        ["v1", "customers", c, "contracts"] => {
            ("/v1/customers/{id}/contracts", id(c).map(Route::Contracts))
        }
        ["v1", "classes", "booking", b] => {
            ("/v1/classes/booking/{id}", id(b).map(Route::ClassBooking))
        }
        ["v1", "classes", c, "slots", s] => (
            "/v1/classes/{classId}/slots/{id}",
            id(c)
                .zip(id(s))
                .map(|(class_id, slot_id)| Route::ClassSlot { class_id, slot_id }),
        ),
        ["v1", "appointments", "booking", b] => (
            "/v1/appointments/booking/{id}",
            id(b).map(Route::AppointmentBooking),
        ),
        ["v1", "employees", e] => ("/v1/employees/{id}", id(e).map(Route::Employee)),
        ["v1", "studios", "information"] => {
            ("/v1/studios/information", Some(Route::StudioInformation))
        }
        ["v1", "taxadvisor", "exports", x] => (
            "/v1/taxadvisor/exports/{id}",
            id(x).map(Route::TaxAdvisorExport),
        ),
        _ => return None,
    };
    Some(Matched { template, route })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_endpoint() {
        let cases = [
            ("/v1/customers", Route::CustomerList),
            ("/v1/customers/17", Route::Customer(17)),
            (
                "/v1/communications/5/communication-preferences",
                Route::CommunicationPreferences(5),
            ),
            ("/v1/customers/5/contracts", Route::Contracts(5)),
            ("/v1/classes/booking/9", Route::ClassBooking(9)),
            (
                "/v1/classes/3/slots/43",
                Route::ClassSlot {
                    class_id: 3,
                    slot_id: 43,
                },
            ),
            ("/v1/appointments/booking/2", Route::AppointmentBooking(2)),
            ("/v1/employees/8", Route::Employee(8)),
            ("/v1/studios/information", Route::StudioInformation),
            ("/v1/taxadvisor/exports/4", Route::TaxAdvisorExport(4)),
        ];
        for (path, route) in cases {
            assert_eq!(
                match_path(path).and_then(|m| m.route),
                Some(route),
                "{path}"
            );
        }
    }

    #[test]
    fn keeps_the_template_for_bad_ids_and_refuses_unknown_paths() {
        assert_eq!(
            match_path("/v1/customers/abc"),
            Some(Matched {
                template: "/v1/customers/{id}",
                route: None
            })
        );
        assert_eq!(
            match_path("/v1/customers/"),
            Some(Matched {
                template: "/v1/customers/{id}",
                route: None
            })
        );
        assert_eq!(match_path("/v1/customer"), None);
        assert_eq!(match_path("/v1/customers/1/"), None);
        assert_eq!(match_path("/v2/customers/1"), None);
        assert_eq!(match_path(""), None);
    }
}
