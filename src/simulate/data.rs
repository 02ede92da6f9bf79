//! Entities generated from (studio seed, entity id), so every answer is reproducible.
//!
//! Nothing is stored: the same request always yields the same JSON, which lets tests predict what
//! the relay fetched and lets benches run for hours without growing memory. Dates are relative to
//! a fixed day rather than "now" for the same reason.

use std::ops::RangeInclusive;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::{Date, Duration, Month};

use super::names::{
    APPOINTMENT_TITLES, CITIES, CLASS_NAMES, EMPLOYEE_ROLES, FIRST_NAMES_FEMALE, FIRST_NAMES_MALE,
    FIRST_NAMES_UNISEX, LAST_NAMES, RATE_NAMES, ROOMS, STREETS,
};

/// Customer ids that exist unless a studio says otherwise ([`DataSet::with_customers`]); the
/// event generator mostly stays inside so most fetches succeed.
pub const CUSTOMER_IDS: RangeInclusive<i64> = 1..=2000;
pub const CLASS_BOOKING_IDS: RangeInclusive<i64> = 1..=2000;
pub const CLASS_SLOT_IDS: RangeInclusive<i64> = 1..=2000;
pub const APPOINTMENT_BOOKING_IDS: RangeInclusive<i64> = 1..=2000;
pub const EMPLOYEE_IDS: RangeInclusive<i64> = 1..=100;
pub const TAX_EXPORT_IDS: RangeInclusive<i64> = 1..=50;
/// How many distinct classes the slots are spread over.
pub const CLASS_COUNT: i64 = 40;

/// The class a slot belongs to. Independent of the studio seed so that an event generator with no
/// studio in mind can still put the right `classId` into CLASS_SLOT_* content.
pub fn class_of_slot(slot_id: i64) -> i64 {
    (slot_id - 1).rem_euclid(CLASS_COUNT) + 1
}

/// The first contract of every existing customer; CONTRACT_* events point at it.
pub fn first_contract_id(customer_id: i64) -> i64 {
    customer_id * 10 + 1
}

/// "Today" for the generated data.
const REFERENCE_DAY: Date = match Date::from_calendar_date(2025, Month::January, 1) {
    Ok(d) => d,
    Err(_) => panic!("2025-01-01 is a valid date"),
};

/// Separates the random streams of different entity kinds with the same id.
#[derive(Clone, Copy)]
enum Kind {
    Customer = 1,
    CustomerStatus,
    Preferences,
    Contracts,
    ClassBooking,
    ClassSlot,
    Appointment,
    Employee,
    Studio,
    TaxExport,
}

/// The generated data of one studio.
#[derive(Clone, Debug)]
pub struct DataSet {
    studio_id: String,
    seed: u64,
    /// Customers 1..=customers exist.
    customers: i64,
}

impl DataSet {
    /// A studio with the customers of [`CUSTOMER_IDS`].
    pub fn new(studio_id: impl Into<String>, seed: u64) -> Self {
        Self {
            studio_id: studio_id.into(),
            seed,
            customers: *CUSTOMER_IDS.end(),
        }
    }

    /// The same studio with customers `1..=n`. A customer's record depends on the seed and its
    /// id only, so customer 17 is the same person whatever `n` is.
    pub fn with_customers(self, n: u32) -> Self {
        Self {
            customers: i64::from(n),
            ..self
        }
    }

    /// The ids of the generated customers.
    pub fn customer_ids(&self) -> RangeInclusive<i64> {
        1..=self.customers
    }

    /// A customer for a booking to belong to; customer 1 when the studio has none, because an
    /// empty range cannot be drawn from.
    fn some_customer(&self, rng: &mut StdRng) -> i64 {
        rng.gen_range(1..=self.customers.max(1))
    }

    /// The vendor identifies studios by number; derive a stable one from the seed.
    pub fn numeric_studio_id(&self) -> i64 {
        // Below 10^9 keeps it readable and positive.
        1_000_000 + (splitmix(self.seed) % 900_000_000) as i64
    }

    /// The city named in the studio id ("hamburg-altona" is in Hamburg), so data looks local.
    fn home_city(&self) -> Option<(&'static str, u32, u32)> {
        let id = self.studio_id.to_lowercase();
        CITIES
            .iter()
            .find(|(city, _, _)| id.contains(&ascii_lower(city)))
            .copied()
    }

    fn rng(&self, kind: Kind, id: i64) -> StdRng {
        let mixed = splitmix(splitmix(self.seed ^ ((kind as u64) << 56)) ^ id as u64);
        StdRng::seed_from_u64(mixed)
    }

    fn customer_status(&self, id: i64) -> &'static str {
        let roll = self.rng(Kind::CustomerStatus, id).gen_range(0..100);
        match roll {
            0..=69 => "MEMBER",
            70..=84 => "PROSPECT",
            _ => "FORMER_MEMBER",
        }
    }

    /// `GET /v1/customers/{id}`.
    pub fn customer(&self, id: i64) -> Option<Value> {
        self.customer_ids()
            .contains(&id)
            .then(|| self.generated_customer(id))
    }

    /// The customer the generator makes for `id`, whether or not the studio has that id: the
    /// start of a customer the simulator is told to add.
    pub(crate) fn generated_customer(&self, id: i64) -> Value {
        let mut rng = self.rng(Kind::Customer, id);
        let (gender, first_names) = match rng.gen_range(0..100) {
            0..=47 => ("FEMALE", FIRST_NAMES_FEMALE),
            48..=95 => ("MALE", FIRST_NAMES_MALE),
            _ => ("UNISEX", FIRST_NAMES_UNISEX),
        };
        let first = pick(&mut rng, first_names);
        let last = pick(&mut rng, LAST_NAMES);
        let birth = day_offset(rng.gen_range(-27_000..=-6_000));
        let (city, zip_lo, zip_hi) = match self.home_city() {
            Some(home) if rng.gen_bool(0.8) => home,
            _ => *CITIES.choose(&mut rng).unwrap_or(&CITIES[0]),
        };
        let zip = rng.gen_range(zip_lo..=zip_hi);
        let house = match rng.gen_range(0..10) {
            0 => format!(
                "{}{}",
                rng.gen_range(1..=180),
                ['a', 'b', 'c'][rng.gen_range(0..3)]
            ),
            _ => rng.gen_range(1..=180).to_string(),
        };
        let status = self.customer_status(id);
        let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        let image_url = rng
            .gen_bool(0.6)
            .then(|| format!("https://images.example.com/customers/{uuid}.jpg"));
        let phone = format!(
            "+49 1{}{} {}",
            rng.gen_range(5..=7),
            rng.gen_range(0..=9),
            rng.gen_range(1_000_000..=9_999_999)
        );
        let access_mediums = if status == "MEMBER" {
            json!([{"type": "CARD", "value": format!("{:08X}", rng.gen::<u32>())}])
        } else {
            json!([])
        };
        json!({
            "id": id,
            "customerNumber": (100_000 + id).to_string(),
            "firstName": first,
            "lastName": last,
            "dateOfBirth": date_string(birth),
            "email": format!("{}.{}{}@example.com", ascii_lower(first), ascii_lower(last), id),
            "gender": gender,
            "street": pick(&mut rng, STREETS),
            "houseNumber": house,
            "zipCode": format!("{zip:05}"),
            "city": city,
            "country": "DE",
            "status": status,
            "accessRefusal": rng.gen_bool(0.03),
            "studioId": self.numeric_studio_id(),
            "uuid": uuid.to_string(),
            "thirdPartyId": null,
            "imageUrl": image_url,
            "phonePrivateMobile": phone,
            "accessMediums": access_mediums,
        })
    }

    /// `GET /v1/communications/{id}/communication-preferences`.
    pub fn communication_preferences(&self, customer_id: i64) -> Option<Value> {
        if !self.customer_ids().contains(&customer_id) {
            return None;
        }
        let mut rng = self.rng(Kind::Preferences, customer_id);
        let categories = [
            (1, "NEWSLETTER"),
            (2, "MARKETING"),
            (3, "CONTRACT_INFORMATION"),
        ];
        let prefs: Vec<Value> = categories
            .iter()
            .map(|(cat_id, name)| {
                let channels: Vec<Value> = ["EMAIL", "SMS", "LETTER", "PUSH_NOTIFICATION"]
                    .iter()
                    .map(|ch| json!({"communicationChannel": ch, "active": rng.gen_bool(0.5)}))
                    .collect();
                json!({"messageCategory": {"id": cat_id, "name": name}, "channels": channels})
            })
            .collect();
        Some(Value::Array(prefs))
    }

    /// `GET /v1/customers/{id}/contracts`: a plain list, newest last.
    pub fn contracts(&self, customer_id: i64) -> Option<Value> {
        if !self.customer_ids().contains(&customer_id) {
            return None;
        }
        let mut rng = self.rng(Kind::Contracts, customer_id);
        let former = self.customer_status(customer_id) == "FORMER_MEMBER";
        let count = rng.gen_range(1..=3);
        let mut start = rng.gen_range(-2_500..=-400);
        let contracts: Vec<Value> = (1..=count)
            .map(|k| {
                let term_days = [365, 730][rng.gen_range(0..2)];
                let end = start + term_days;
                let newest = k == count;
                let active = newest && !former;
                let cancelled = if active { rng.gen_bool(0.15) } else { former || rng.gen_bool(0.3) };
                let created = start - rng.gen_range(1..=30);
                let contract = json!({
                    "id": customer_id * 10 + k,
                    "createdDate": datetime_string(day_offset(created), rng.gen_range(8..=21), rng.gen_range(0..60)),
                    "startDate": date_string(day_offset(start)),
                    "endDate": date_string(day_offset(end)),
                    "rateName": pick(&mut rng, RATE_NAMES),
                    "contractStatus": if active { "ACTIVE" } else { "INACTIVE" },
                    "cancelled": cancelled,
                });
                start = end + 1;
                contract
            })
            .collect();
        Some(Value::Array(contracts))
    }

    /// `GET /v1/classes/booking/{id}`.
    pub fn class_booking(&self, booking_id: i64) -> Option<Value> {
        if !CLASS_BOOKING_IDS.contains(&booking_id) {
            return None;
        }
        let mut rng = self.rng(Kind::ClassBooking, booking_id);
        let slot = rng.gen_range(CLASS_SLOT_IDS);
        let status = match rng.gen_range(0..100) {
            0..=69 => "BOOKED",
            70..=79 => "WAITING_LIST",
            80..=94 => "CANCELED",
            _ => "ATTENDED",
        };
        let booked = day_offset(rng.gen_range(-60..=0));
        Some(json!({
            "bookingId": booking_id,
            "bookingStatus": status,
            "classSlotId": slot,
            "classId": class_of_slot(slot),
            "customerId": self.some_customer(&mut rng),
            "creationDateTime": datetime_string(booked, rng.gen_range(6..=22), rng.gen_range(0..60)),
        }))
    }

    /// `GET /v1/classes/{classId}/slots/{id}`: only the class the slot belongs to finds it.
    pub fn class_slot(&self, class_id: i64, slot_id: i64) -> Option<Value> {
        if !CLASS_SLOT_IDS.contains(&slot_id) || class_of_slot(slot_id) != class_id {
            return None;
        }
        let mut rng = self.rng(Kind::ClassSlot, slot_id);
        let day = day_offset(rng.gen_range(-30..=30));
        let hour = rng.gen_range(7..=20);
        let minutes = [45, 60, 90][rng.gen_range(0..3)];
        let end_hour = hour + minutes / 60;
        let end_minute = minutes % 60;
        let max = rng.gen_range(10..=30);
        let booked = rng.gen_range(0..=max);
        Some(json!({
            "id": slot_id,
            "classId": class_id,
            "title": CLASS_NAMES[((class_id - 1) as usize) % CLASS_NAMES.len()],
            "startDateTime": datetime_string(day, hour, 0),
            "endDateTime": datetime_string(day, end_hour, end_minute),
            "maxParticipants": max,
            "bookedParticipants": booked,
            "waitingListParticipants": if booked == max { rng.gen_range(0..=5) } else { 0 },
            "instructorId": rng.gen_range(EMPLOYEE_IDS),
            "room": pick(&mut rng, ROOMS),
            "status": if rng.gen_bool(0.05) { "CANCELED" } else { "ACTIVE" },
        }))
    }

    /// `GET /v1/appointments/booking/{id}`.
    pub fn appointment_booking(&self, booking_id: i64) -> Option<Value> {
        if !APPOINTMENT_BOOKING_IDS.contains(&booking_id) {
            return None;
        }
        let mut rng = self.rng(Kind::Appointment, booking_id);
        let day = day_offset(rng.gen_range(-30..=30));
        let hour = rng.gen_range(7..=20);
        Some(json!({
            "bookingId": booking_id,
            "bookingStatus": match rng.gen_range(0..10) { 0 => "CANCELED", 1 => "ATTENDED", _ => "BOOKED" },
            "appointmentId": rng.gen_range(1..=APPOINTMENT_TITLES.len() as i64),
            "title": pick(&mut rng, APPOINTMENT_TITLES),
            "customerId": self.some_customer(&mut rng),
            "employeeId": rng.gen_range(EMPLOYEE_IDS),
            "startDateTime": datetime_string(day, hour, 0),
            "endDateTime": datetime_string(day, hour + 1, 0),
        }))
    }

    /// `GET /v1/employees/{id}`.
    pub fn employee(&self, id: i64) -> Option<Value> {
        if !EMPLOYEE_IDS.contains(&id) {
            return None;
        }
        let mut rng = self.rng(Kind::Employee, id);
        let names = if rng.gen_bool(0.5) {
            FIRST_NAMES_FEMALE
        } else {
            FIRST_NAMES_MALE
        };
        let first = pick(&mut rng, names);
        let last = pick(&mut rng, LAST_NAMES);
        Some(json!({
            "id": id,
            "firstName": first,
            "lastName": last,
            "email": format!("{}.{}@{}.example.com", ascii_lower(first), ascii_lower(last), self.studio_id),
            "role": pick(&mut rng, EMPLOYEE_ROLES),
            "active": rng.gen_bool(0.9),
        }))
    }

    /// `GET /v1/studios/information`: the studio behind the key, whatever the event's entityId.
    pub fn studio_information(&self) -> Value {
        let mut rng = self.rng(Kind::Studio, 0);
        let (city, zip_lo, zip_hi) = self
            .home_city()
            .unwrap_or_else(|| *CITIES.choose(&mut rng).unwrap_or(&CITIES[0]));
        let weekday_open = rng.gen_range(5..=7);
        let weekday_close = rng.gen_range(22..=23);
        let weekend_open = rng.gen_range(8..=10);
        let weekend_close = rng.gen_range(18..=21);
        let hours: Vec<Value> = [
            "MONDAY",
            "TUESDAY",
            "WEDNESDAY",
            "THURSDAY",
            "FRIDAY",
            "SATURDAY",
            "SUNDAY",
        ]
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let (open, close) = if i < 5 {
                (weekday_open, weekday_close)
            } else {
                (weekend_open, weekend_close)
            };
            json!({"dayOfWeek": day, "openingTime": format!("{open:02}:00"), "closingTime": format!("{close:02}:00")})
        })
        .collect();
        json!({
            "studioId": self.numeric_studio_id(),
            "studioName": display_name(&self.studio_id),
            "street": pick(&mut rng, STREETS),
            "houseNumber": rng.gen_range(1..=120).to_string(),
            "zipCode": format!("{:05}", rng.gen_range(zip_lo..=zip_hi)),
            "city": city,
            "country": "DE",
            "email": format!("info@{}.example.com", self.studio_id),
            "phone": format!("+49 {} {}", rng.gen_range(30..=89), rng.gen_range(100_000..=999_999)),
            "openingHours": hours,
        })
    }

    /// Up to `n` answers of one endpoint, from the first ids, for showing and checking what a
    /// studio's `[entity]` selection does to the vendor's shapes.
    pub fn samples(&self, endpoint: crate::route::Endpoint, n: i64) -> Vec<Value> {
        use crate::route::Endpoint::*;
        (1..=n)
            .filter_map(|id| match endpoint {
                Customer => self.customer(id),
                CommunicationPreferences => self.communication_preferences(id),
                Contracts => self.contracts(id),
                ClassBooking => self.class_booking(id),
                ClassSlot => self.class_slot(class_of_slot(id), id),
                AppointmentBooking => self.appointment_booking(id),
                Employee => self.employee(id),
                StudioInformation => Some(self.studio_information()),
                TaxAdvisorExport => self.tax_advisor_export(id),
                // A list, not one entity: its records are customers.
                CustomerList => self.customer(id),
            })
            .collect()
    }

    /// `GET /v1/taxadvisor/exports/{id}`: one export per month, counted back from "today".
    pub fn tax_advisor_export(&self, id: i64) -> Option<Value> {
        if !TAX_EXPORT_IDS.contains(&id) {
            return None;
        }
        let mut rng = self.rng(Kind::TaxExport, id);
        // Export 50 covers the month before the reference day, export 1 lies 50 months earlier.
        let months_back = TAX_EXPORT_IDS.end() - id + 1;
        let total = i64::from(REFERENCE_DAY.year()) * 12
            + i64::from(u8::from(REFERENCE_DAY.month()))
            - 1
            - months_back;
        let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
        let from = format!("{year:04}-{:02}-01", month0 + 1);
        let to_day = days_in_month(year, month0 + 1);
        let to = format!("{year:04}-{:02}-{to_day:02}", month0 + 1);
        Some(json!({
            "id": id,
            "status": if id == *TAX_EXPORT_IDS.end() && rng.gen_bool(0.5) { "IN_PROGRESS" } else { "FINISHED" },
            "format": "DATEV",
            "periodFrom": from,
            "periodTo": to,
            "createdDateTime": format!("{year:04}-{:02}-{:02}T03:{:02}:00.000+01:00", month0 + 1, to_day, rng.gen_range(0..60)),
            "fileName": format!("datev-export-{year:04}-{:02}.zip", month0 + 1),
        }))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick(rng: &mut StdRng, list: &[&'static str]) -> &'static str {
    list.choose(rng).copied().unwrap_or_default()
}

fn day_offset(days: i64) -> Date {
    REFERENCE_DAY.saturating_add(Duration::days(days))
}

fn date_string(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Local time in the vendor's style; the offset is fixed so the output stays reproducible.
fn datetime_string(d: Date, hour: i64, minute: i64) -> String {
    format!("{}T{hour:02}:{minute:02}:00.000+01:00", date_string(d))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// E-mail local parts are ASCII in practice; transliterate the German way.
fn ascii_lower(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'ı' => out.push('i'),
            c if c.is_ascii_alphanumeric() => out.push(c),
            _ => {}
        }
    }
    out
}

/// "berlin-mitte" -> "Berlin Mitte".
fn display_name(studio_id: &str) -> String {
    studio_id
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> DataSet {
        DataSet::new("berlin-mitte", 42)
    }

    fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is a string in {v}"))
    }

    fn is_date(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && s.chars()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    }

    #[test]
    fn same_seed_and_id_give_the_same_entity() {
        let a = berlin();
        let b = DataSet::new("berlin-mitte", 42);
        for id in [1, 17, 2000] {
            assert_eq!(a.customer(id), b.customer(id));
            assert_eq!(a.contracts(id), b.contracts(id));
            assert_eq!(a.class_booking(id), b.class_booking(id));
        }
        assert_eq!(a.studio_information(), b.studio_information());
    }

    #[test]
    fn different_seeds_give_different_people() {
        let a = berlin();
        let b = DataSet::new("berlin-mitte", 43);
        let differing = (1..=50)
            .filter(|&id| a.customer(id) != b.customer(id))
            .count();
        assert_eq!(differing, 50);
    }

    #[test]
    fn customers_exist_exactly_in_their_range() {
        let d = berlin();
        assert!(d.customer(0).is_none());
        assert!(d.customer(-5).is_none());
        assert!(d.customer(2001).is_none());
        assert!(d.customer(1).is_some());
        assert!(d.customer(2000).is_some());
        assert!(d.communication_preferences(2001).is_none());
        assert!(d.contracts(2001).is_none());
    }

    #[test]
    fn the_customer_count_moves_the_range_and_keeps_the_people() {
        let small = berlin().with_customers(10);
        let large = berlin().with_customers(3000);
        assert_eq!(small.customer_ids(), 1..=10);
        assert!(small.customer(11).is_none());
        assert!(small.contracts(11).is_none());
        assert!(small.communication_preferences(11).is_none());
        assert!(large.customer(3000).is_some());
        assert!(large.contracts(3000).is_some());
        assert!(large.customer(3001).is_none());
        for id in [1, 10] {
            assert_eq!(small.customer(id), berlin().customer(id));
            assert_eq!(large.customer(id), berlin().customer(id));
        }
        for id in 1..=100 {
            let booking = small.class_booking(id).expect("booking exists");
            assert!(booking["customerId"]
                .as_i64()
                .is_some_and(|c| small.customer_ids().contains(&c)));
        }
        assert!(berlin().with_customers(0).class_booking(1).is_some());
    }

    #[test]
    fn customers_have_the_vendor_fields() {
        let d = berlin();
        let mut statuses = std::collections::HashSet::new();
        for id in 1..=300 {
            let c = d.customer(id).expect("customer exists");
            assert_eq!(c["id"], id);
            assert_eq!(str_field(&c, "customerNumber"), (100_000 + id).to_string());
            assert!(!str_field(&c, "firstName").is_empty());
            assert!(!str_field(&c, "lastName").is_empty());
            assert!(is_date(str_field(&c, "dateOfBirth")), "{c}");
            let email = str_field(&c, "email");
            assert!(email.is_ascii() && email.contains('@'), "{email}");
            assert!(["MALE", "FEMALE", "UNISEX"].contains(&str_field(&c, "gender")));
            assert_eq!(str_field(&c, "zipCode").len(), 5);
            assert_eq!(str_field(&c, "country"), "DE");
            let status = str_field(&c, "status");
            assert!(["MEMBER", "PROSPECT", "FORMER_MEMBER"].contains(&status));
            statuses.insert(status.to_owned());
            assert!(c["accessRefusal"].is_boolean());
            assert_eq!(c["studioId"], d.numeric_studio_id());
            assert!(uuid::Uuid::parse_str(str_field(&c, "uuid")).is_ok());
            assert!(str_field(&c, "phonePrivateMobile").starts_with("+49 1"));
            assert!(c["imageUrl"].is_null() || c["imageUrl"].is_string());
        }
        assert_eq!(statuses.len(), 3, "all statuses occur");
    }

    #[test]
    fn contracts_are_one_to_three_and_consistent() {
        let d = berlin();
        for id in 1..=300 {
            let list = d.contracts(id).expect("contracts exist");
            let list = list.as_array().expect("a list");
            assert!((1..=3).contains(&list.len()));
            assert_eq!(list[0]["id"], first_contract_id(id));
            let active = list
                .iter()
                .filter(|c| c["contractStatus"] == "ACTIVE")
                .count();
            let former = d.customer(id).expect("customer")["status"] == "FORMER_MEMBER";
            assert_eq!(active, usize::from(!former));
            for c in list {
                assert!(is_date(str_field(c, "startDate")));
                assert!(is_date(str_field(c, "endDate")));
                assert!(str_field(c, "startDate") < str_field(c, "endDate"));
                assert!(str_field(c, "createdDate").len() > 10);
                assert!(!str_field(c, "rateName").is_empty());
                assert!(c["cancelled"].is_boolean());
            }
        }
    }

    #[test]
    fn class_bookings_point_at_existing_slots() {
        let d = berlin();
        assert!(d.class_booking(0).is_none());
        assert!(d.class_booking(2001).is_none());
        for id in 1..=200 {
            let b = d.class_booking(id).expect("booking exists");
            let slot = b["classSlotId"].as_i64().expect("slot id");
            let class = b["classId"].as_i64().expect("class id");
            assert_eq!(class, class_of_slot(slot));
            let s = d.class_slot(class, slot).expect("the slot exists");
            assert_eq!(s["id"], slot);
            assert!(b["customerId"]
                .as_i64()
                .is_some_and(|c| CUSTOMER_IDS.contains(&c)));
        }
    }

    #[test]
    fn class_slots_are_found_only_under_their_class() {
        let d = berlin();
        let slot = 77;
        let class = class_of_slot(slot);
        assert!((1..=CLASS_COUNT).contains(&class));
        assert!(d.class_slot(class, slot).is_some());
        assert!(d.class_slot(class % CLASS_COUNT + 1, slot).is_none());
        assert!(d.class_slot(class, 2001).is_none());
    }

    #[test]
    fn other_entities_respect_their_ranges() {
        let d = berlin();
        assert!(d.appointment_booking(1).is_some());
        assert!(d.appointment_booking(2001).is_none());
        assert!(d.employee(100).is_some());
        assert!(d.employee(101).is_none());
        assert!(d.tax_advisor_export(50).is_some());
        assert!(d.tax_advisor_export(51).is_none());
        assert!(d.tax_advisor_export(0).is_none());
    }

    #[test]
    fn tax_exports_cover_consecutive_months() {
        let d = berlin();
        let last = d.tax_advisor_export(50).expect("export");
        assert_eq!(last["periodFrom"], "2024-12-01");
        assert_eq!(last["periodTo"], "2024-12-31");
        let feb = d.tax_advisor_export(40).expect("export");
        assert_eq!(feb["periodFrom"], "2024-02-01");
        assert_eq!(feb["periodTo"], "2024-02-29");
        let first = d.tax_advisor_export(1).expect("export");
        assert_eq!(first["periodFrom"], "2020-11-01");
    }

    #[test]
    fn studio_information_has_a_week_of_opening_hours() {
        let info = berlin().studio_information();
        assert_eq!(info["studioName"], "Berlin Mitte");
        assert_eq!(info["city"], "Berlin");
        let zip: u32 = info["zipCode"]
            .as_str()
            .and_then(|z| z.parse().ok())
            .expect("zip");
        assert!((10115..=14199).contains(&zip));
        let locals = (1..=100)
            .filter(|&id| berlin().customer(id).is_some_and(|c| c["city"] == "Berlin"))
            .count();
        assert!(locals > 60, "{locals} of 100 customers live in Berlin");
        let hours = info["openingHours"].as_array().expect("list");
        assert_eq!(hours.len(), 7);
        assert_eq!(hours[0]["dayOfWeek"], "MONDAY");
    }

    #[test]
    fn names_become_ascii_mail_parts() {
        assert_eq!(ascii_lower("Jürgen"), "juergen");
        assert_eq!(ascii_lower("Yılmaz"), "yilmaz");
        assert_eq!(ascii_lower("Schäfer-Groß"), "schaefergross");
        assert_eq!(display_name("hamburg-altona"), "Hamburg Altona");
    }
}
