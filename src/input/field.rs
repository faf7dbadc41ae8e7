//! One named field of a JSON Lines record, as its JSON text: what
//! `dedup --keep field:NAME` ranks a record by. A second, narrow read of a
//! record the text parser ([`super::json`]) has already accepted, made only
//! for the records that need it (pass 2's candidates), so the parser every
//! job shares stays as it is.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The JSON text of the field `name` of the JSON object `bytes` (the last
/// one, when the name repeats, as serde_json's own maps keep); `None` when
/// the object has no such field. An error when `bytes` is not a JSON
/// object.
pub fn json_field<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a RawValue>, String> {
    let json = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut de = serde_json::Deserializer::from_str(json);
    FieldSeed { name }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())
}

struct FieldSeed<'n> {
    name: &'n str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.name {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str, name: &str) -> Option<String> {
        json_field(json.as_bytes(), name)
            .unwrap()
            .map(|v| v.get().to_owned())
    }

    #[test]
    fn a_field_is_found_as_its_json_text() {
        let line = r#"{"text":"a b","score":0.5,"n\u0061me":"x\"y","deep":{"score":1}}"#;
        assert_eq!(field(line, "score").as_deref(), Some("0.5"));
        assert_eq!(field(line, "name").as_deref(), Some(r#""x\"y""#));
        assert_eq!(field(line, "deep").as_deref(), Some(r#"{"score":1}"#));
        assert_eq!(field(line, "absent"), None);
        assert_eq!(field(r#"{"a":1,"a":2}"#, "a").as_deref(), Some("2"));
        assert!(json_field(b"[1]", "a").is_err());
    }
}
