//! Small built-in word lists for generated people and places.
//!
//! German data with umlauts on purpose: the relay must carry UTF-8 end to end.

pub(crate) const FIRST_NAMES_FEMALE: &[&str] = &[
    "Anna",
    "Lena",
    "Marie",
    "Sophie",
    "Jana",
    "Katrin",
    "Sabine",
    "Julia",
    "Leonie",
    "Mia",
    "Hannah",
    "Emilia",
    "Clara",
    "Jördis",
    "Özlem",
    "Franziska",
    "Birgit",
    "Aylin",
];

pub(crate) const FIRST_NAMES_MALE: &[&str] = &[
    "Lukas",
    "Jonas",
    "Felix",
    "Paul",
    "Maximilian",
    "Thomas",
    "Michael",
    "Stefan",
    "Jürgen",
    "Tim",
    "Ben",
    "Elias",
    "Noah",
    "Mehmet",
    "Henrik",
    "Björn",
    "Moritz",
    "Kai",
];

pub(crate) const FIRST_NAMES_UNISEX: &[&str] = &["Alex", "Kim", "Robin", "Sascha", "Charlie"];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Yılmaz",
    "Nowak",
];

pub(crate) const STREETS: &[&str] = &[
    "Hauptstraße",
    "Schulstraße",
    "Gartenstraße",
    "Bahnhofstraße",
    "Dorfstraße",
    "Bergstraße",
    "Lindenstraße",
    "Kirchstraße",
    "Waldstraße",
    "Ringstraße",
    "Am Markt",
    "Friedrichstraße",
    "Torstraße",
    "Große Bergstraße",
    "Ottenser Hauptstraße",
];

/// City and the lowest and highest postcode handed out for it.
pub(crate) const CITIES: &[(&str, u32, u32)] = &[
    ("Berlin", 10115, 14199),
    ("Hamburg", 20095, 22769),
    ("München", 80331, 81929),
    ("Köln", 50667, 51149),
    ("Leipzig", 4103, 4357),
    ("Potsdam", 14467, 14482),
];

pub(crate) const RATE_NAMES: &[&str] = &[
    "Basic 12 Monate",
    "Premium 24 Monate",
    "Flex monatlich kündbar",
    "Student 12 Monate",
    "Firmenfitness",
    "Senior 60+",
];

pub(crate) const CLASS_NAMES: &[&str] = &[
    "Yoga",
    "Spinning",
    "Pilates",
    "HIIT",
    "Zumba",
    "Body Pump",
    "Rückenfit",
    "Functional Training",
];

pub(crate) const APPOINTMENT_TITLES: &[&str] = &[
    "Probetraining",
    "Personal Training",
    "Körperanalyse",
    "Ernährungsberatung",
    "Trainingsplan-Check",
];

pub(crate) const ROOMS: &[&str] = &["Kursraum 1", "Kursraum 2", "Cycling-Studio", "Outdoor"];

pub(crate) const EMPLOYEE_ROLES: &[&str] = &["TRAINER", "FRONT_DESK", "MANAGER", "SALES"];
