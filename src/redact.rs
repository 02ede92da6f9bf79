//! Error messages that never repeat the offending value: in a tenant file or the config, that
//! value is often a key typed into the wrong place.

/// Drops the value from serde's and figment's "invalid type" / "invalid value" messages:
/// `invalid type: string "wh-abc", expected a sequence` becomes
/// `invalid type: string, expected a sequence`.
pub fn without_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(start) = message.find(marker) else {
            continue;
        };
        let after = start + marker.len();
        let Some(expected) = message[after..].find(", expected") else {
            continue;
        };
        let described = &message[after..after + expected];
        let kind = described
            .split(['"', '`', '\''])
            .next()
            .unwrap_or("")
            .trim_end();
        return format!(
            "{}{kind}{}",
            &message[..after],
            &message[after + expected..]
        );
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn keeps_the_kind_and_the_expectation_but_not_the_value() {
        assert_eq!(
            without_values(r#"invalid type: string "wh-SECRET", expected a sequence"#),
            "invalid type: string, expected a sequence"
        );
        assert_eq!(
            without_values("invalid type: found unsigned int `12345678`, expected a string"),
            "invalid type: found unsigned int, expected a string"
        );
        assert_eq!(
            without_values("invalid value: integer `-3`, expected u32"),
            "invalid value: integer, expected u32"
        );
        assert_eq!(
            without_values("missing field `base_url`"),
            "missing field `base_url`"
        );
    }
}
