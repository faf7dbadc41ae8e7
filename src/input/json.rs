//! The JSON Lines record parser: a serde visitor that captures the text and
//! id fields of one JSON object, borrowing the text when it has no escapes,
//! and skips every other field. No map, no `Value`.
//!
//! The id field is captured as its JSON text ([`RawValue`]), so that it is
//! written out exactly as it came in.
//!
//! Nesting deeper than serde_json's recursion limit (128) is an error
//! wherever it is (an id field may not nest at all: an array or object
//! there is an error whatever its depth, and is skipped without recursion). serde_json skips `IgnoredAny` values with an iterative
//! loop that has no depth limit, so the fast `IgnoredAny` skip is used only
//! when the line has too few brackets to reach the limit; other lines skip
//! through `deserialize_any`, which counts depth (and is slower).

use std::borrow::Cow;
use std::fmt;

use drainpipe_actors::RecordError;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::record::{utf8, TextFields};

/// One JSON Lines record: its text, and its id field's JSON text as the
/// input gave it (`None` without an id field).
pub(crate) struct JsonRecord<'a> {
    pub id: Option<&'a str>,
    pub text: Cow<'a, str>,
}

/// Parses one JSON Lines record: a JSON object with a string text field and
/// an optional id field, a string or a number, whose JSON text is kept as
/// it is (escapes, digits and all: `1.0` stays `1.0`, a 30-digit integer
/// keeps its digits). Any other id (null, a boolean, an array or an
/// object) is an error.
pub(crate) fn parse<'a>(
    bytes: &'a [u8],
    fields: &TextFields,
) -> Result<JsonRecord<'a>, RecordError> {
    let json = utf8(bytes)?;
    if !json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(not_an_object(json));
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let object = ObjectSeed {
        fields,
        // Depth 128 is an error for serde_json; it takes as many brackets.
        depth_checked: brackets(bytes) >= 128,
    }
    .deserialize(&mut de)?;
    de.end()?;
    let text = match object.text {
        Some(Value::Str(text)) => text,
        Some(other) => {
            return Err(format!(
                "text field {:?} is not a string (found {})",
                fields.text,
                other.kind()
            )
            .into())
        }
        None => return Err(format!("missing text field {:?}", fields.text).into()),
    };
    let id = match object.id {
        Some(raw) => Some(scalar(raw).map_err(|found| {
            format!(
                "id field {:?} is not a string or a number (found {found})",
                fields.id
            )
        })?),
        None => None,
    };
    Ok(JsonRecord { id, text })
}

/// `raw`, the JSON text of a value, if it is a string or a number; else
/// what it is.
fn scalar(raw: &str) -> Result<&str, &'static str> {
    match raw.as_bytes().first() {
        Some(b'"' | b'-' | b'0'..=b'9') => Ok(raw),
        Some(b'n') => Err("null"),
        Some(b't' | b'f') => Err("a boolean"),
        Some(b'[') => Err("an array"),
        _ => Err("an object"),
    }
}

/// The number of `[` and `{` in `bytes` (in strings too), vectorized.
fn brackets(bytes: &[u8]) -> usize {
    bytes
        .chunks(64)
        .map(|chunk| {
            // `[` | 0x20 == `{`, and no other byte maps to `{`.
            let n: u8 = chunk.iter().map(|&b| u8::from(b | 0x20 == b'{')).sum();
            usize::from(n)
        })
        .sum()
}

/// The error for a line that is not an object: serde_json's message if it
/// is not JSON at all, else what it is.
fn not_an_object(json: &str) -> RecordError {
    match serde_json::from_str::<Value<'_>>(json) {
        Err(e) => e.into(),
        Ok(value) => format!("not a JSON object (found {})", value.kind()).into(),
    }
}

/// The fields captured from one object: the text field's value, and the
/// id field's JSON text.
struct Object<'de> {
    text: Option<Value<'de>>,
    id: Option<&'de str>,
}

/// A captured field value: strings kept, the rest only named.
enum Value<'de> {
    Str(Cow<'de, str>),
    Number,
    /// Anything else (skipped): what it was.
    Other(&'static str),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Number => "a number",
            Value::Other(kind) => kind,
        }
    }
}

impl<'de> de::Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value<'de>, E> {
        Ok(Value::Number)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value<'de>, E> {
        Ok(Value::Other("a boolean"))
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value<'de>, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Value::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value<'de>, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Value::Other("an object"))
    }
}

/// Skips any JSON value, like `IgnoredAny`, but through `deserialize_any`
/// so that serde_json's recursion limit applies (its `IgnoredAny` path is
/// iterative and accepts any depth).
struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// Which captured field a key is.
enum Key {
    Text,
    Id,
    /// The text and id fields have the same name.
    Both,
    Other,
}

struct KeySeed<'f>(&'f TextFields);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match (key == self.0.text, key == self.0.id) {
            (true, true) => Key::Both,
            (true, false) => Key::Text,
            (false, true) => Key::Id,
            (false, false) => Key::Other,
        })
    }
}

struct ObjectSeed<'f> {
    fields: &'f TextFields,
    /// Skip through [`Skip`] (depth-limited) rather than `IgnoredAny`.
    depth_checked: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Object<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Object<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut object = Object {
            text: None,
            id: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed(self.fields))? {
            let (taken, name) = match key {
                Key::Other => {
                    if self.depth_checked {
                        map.next_value::<Skip>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                    continue;
                }
                Key::Text | Key::Both => (object.text.is_some(), &self.fields.text),
                Key::Id => (object.id.is_some(), &self.fields.id),
            };
            if taken {
                return Err(de::Error::custom(format_args!("duplicate field {name:?}")));
            }
            match key {
                Key::Id => object.id = Some(map.next_value::<&'de RawValue>()?.get()),
                Key::Both => {
                    // One value for both: its JSON text, then its text.
                    let raw = map.next_value::<&'de RawValue>()?.get();
                    object.id = Some(raw);
                    object.text =
                        Some(serde_json::from_str::<Value<'de>>(raw).map_err(de::Error::custom)?);
                }
                _ => object.text = Some(map.next_value::<Value<'de>>()?),
            }
        }
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> TextFields {
        TextFields::default()
    }

    fn ok(json: &str) -> (Option<String>, String, bool) {
        let r = parse(json.as_bytes(), &fields()).unwrap();
        let borrowed = matches!(r.text, Cow::Borrowed(_));
        (r.id.map(str::to_owned), r.text.into_owned(), borrowed)
    }

    fn id(json: &str) -> String {
        ok(json).0.expect("an id")
    }

    fn err(json: &[u8]) -> String {
        err_with(json, &fields())
    }

    fn err_with(json: &[u8], fields: &TextFields) -> String {
        match parse(json, fields) {
            Ok(_) => panic!("{} parsed", String::from_utf8_lossy(json)),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn text_and_id_are_captured() {
        assert_eq!(
            ok(r#"{"id":"abc","text":"hello","x":[1,{"y":2}]}"#),
            (Some("\"abc\"".into()), "hello".into(), true)
        );
        assert_eq!(
            ok(r#" {"text":"a\nb","id" : 42 } "#),
            (Some("42".into()), "a\nb".into(), false)
        );
        assert_eq!(ok(r#"{"text":"t"}"#).0, None);
    }

    #[test]
    fn ids_keep_their_json_text() {
        assert_eq!(id(r#"{"text":"","id":-3}"#), "-3");
        assert_eq!(id(r#"{"text":"","id":1.5}"#), "1.5");
        assert_eq!(id(r#"{"text":"","id":1.0}"#), "1.0");
        assert_eq!(id(r#"{"text":"","id":1e3}"#), "1e3");
        assert_eq!(
            id(r#"{"text":"","id":123456789012345678901234567890}"#),
            "123456789012345678901234567890"
        );
        assert_eq!(
            id(r#"{"text":"","id":"q\"\u00e9\/é"}"#),
            r#""q\"\u00e9\/é""#
        );
    }

    #[test]
    fn ids_other_than_strings_and_numbers_are_errors() {
        for (id, found) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("false", "a boolean"),
            ("[1]", "an array"),
            ("{\"a\":1}", "an object"),
        ] {
            assert_eq!(
                err(format!(r#"{{"text":"t","id":{id}}}"#).as_bytes()),
                format!(r#"id field "id" is not a string or a number (found {found})"#)
            );
        }
    }

    #[test]
    fn field_names_are_configurable() {
        let fields = TextFields {
            text: "body".into(),
            id: "key".into(),
        };
        let r = parse(br#"{"text":1,"body":"b","key":"k"}"#, &fields).unwrap();
        assert_eq!((r.id, &*r.text), (Some("\"k\""), "b"));
        let same = TextFields {
            text: "t".into(),
            id: "t".into(),
        };
        let r = parse(br#"{"t":"\u0078"}"#, &same).unwrap();
        assert_eq!((r.id, &*r.text), (Some("\"\\u0078\""), "x"));
        assert_eq!(
            err_with(br#"{"t":5}"#, &same),
            r#"text field "t" is not a string (found a number)"#
        );
    }

    #[test]
    fn bad_records_are_explained() {
        assert_eq!(err(b"{\"text\":\"\xff\"}"), "not valid UTF-8 at byte 9");
        assert_eq!(err(b"[1,2]"), "not a JSON object (found an array)");
        assert_eq!(err(b"\"text\""), "not a JSON object (found a string)");
        assert_eq!(err(b"12"), "not a JSON object (found a number)");
        assert_eq!(err(br#"{"id":1}"#), r#"missing text field "text""#);
        assert_eq!(
            err(br#"{"text":5}"#),
            r#"text field "text" is not a string (found a number)"#
        );
        assert_eq!(
            err(br#"{"text":null}"#),
            r#"text field "text" is not a string (found null)"#
        );
        assert_eq!(
            err(br#"{"text":["a"]}"#),
            r#"text field "text" is not a string (found an array)"#
        );
        assert!(err(br#"{"text":"a","text":"b"}"#).starts_with(r#"duplicate field "text""#));
        assert!(err(b"{\"text\":\"a\"").starts_with("EOF while parsing an object"));
        assert!(err(b"{\"text\":\"a\"} x").starts_with("trailing characters"));
        assert!(
            err(b"nope").starts_with("expected ident"),
            "{}",
            err(b"nope")
        );
        assert!(err(b"[1,").starts_with("EOF while parsing"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        let mut json = String::from(r#"{"text":"a","deep":"#);
        json.push_str(&"[".repeat(depth));
        json.push_str(&"]".repeat(depth));
        json.push('}');
        assert!(err(json.as_bytes()).starts_with("recursion limit exceeded"));
        // An id may not nest: deep or not, it is an error, found without
        // recursion.
        let mut id = String::from(r#"{"text":"a","id":"#);
        id.push_str(&"{\"a\":".repeat(depth));
        id.push('1');
        id.push_str(&"}".repeat(depth + 1));
        assert!(err(id.as_bytes()).ends_with("(found an object)"));
        let top = "[".repeat(depth);
        assert!(err(top.as_bytes()).starts_with("recursion limit exceeded"));
    }

    #[test]
    fn the_depth_limit_is_the_same_on_the_fast_and_the_checked_path() {
        let nested = |arrays: usize, padding: usize| {
            format!(
                r#"{{"text":"{}","d":{}{}}}"#,
                "[".repeat(padding),
                "[".repeat(arrays),
                "]".repeat(arrays)
            )
        };
        // The object and 126 arrays: depth 127, the deepest allowed.
        assert!(parse(nested(126, 0).as_bytes(), &fields()).is_ok());
        assert!(parse(nested(126, 500).as_bytes(), &fields()).is_ok());
        assert!(err(nested(127, 0).as_bytes()).starts_with("recursion limit exceeded"));
        assert!(err(nested(127, 500).as_bytes()).starts_with("recursion limit exceeded"));
        assert_eq!(brackets(nested(126, 500).as_bytes()), 627);
    }
}
