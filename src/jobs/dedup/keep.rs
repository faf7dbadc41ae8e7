//! Which record of a cluster is kept (`--keep`): the policy, the key it
//! ranks a record by, and the order of keys.
//!
//! The clusters do not depend on the policy (union-find over the verified
//! pairs, [`super::clusters`]); only the record each keeps does. A key is
//! needed for candidate records only (a record in no candidate pair is in
//! no cluster), so pass 2's processors compute it while they read those
//! records, and the Integrator keeps one small [`KeepKey`] per candidate
//! (24 bytes, plus a string field's bytes). Under `first`, the default,
//! no key is computed or kept at all.
//!
//! - `longest` / `shortest`: the text field's length in characters
//!   (Unicode scalar values) as the input gave it, before normalization:
//!   what a reader calls the text's length (Python's `len`), the same
//!   whatever the encoding, so a text of accented or CJK characters is not
//!   longer for taking more bytes.
//! - `field:NAME[:asc|desc]`: the field NAME of the record (a JSON Lines
//!   field, a Parquet column, a WET header given as a field); `desc`, the
//!   default, keeps the highest value (`field:score` keeps the
//!   best-scored), `asc` the lowest. Numbers compare numerically (integers
//!   exactly, an integer and a fraction as 64-bit floats), strings by
//!   their bytes (Unicode code point order). Mixed types: a number ranks
//!   before a string, whichever the direction. A record whose field is
//!   absent, null, a boolean, an array or an object ranks last (the
//!   summary counts the clustered records without a usable value).
//!
//! Ties go to the first record in input order, as does every choice when
//! no record of a cluster ranks above its first.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `--keep`: which record of a cluster is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeepPolicy {
    /// The first in input order (the default).
    #[default]
    First,
    /// The one whose text has the most characters.
    Longest,
    /// The one whose text has the fewest characters.
    Shortest,
    /// The one whose field `name` ranks first: the highest value when
    /// `descending`, else the lowest.
    Field {
        /// The field (or Parquet column).
        name: String,
        /// Highest first.
        descending: bool,
    },
}

/// What a candidate record is ranked by under a policy other than
/// [`KeepPolicy::First`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KeepKey {
    /// The text's length in characters.
    Length(u64),
    /// A field holding an integer that fits 64 signed bits.
    Int(i64),
    /// A field holding a larger non-negative integer.
    UInt(u64),
    /// A field holding any other (finite) number.
    Float(f64),
    /// A field holding a string.
    Text(Box<str>),
    /// No usable field: absent, null, a boolean, an array or an object.
    Missing,
}

/// The syntax, for messages.
pub const KEEP_SYNTAX: &str = "first, longest, shortest or field:NAME[:asc|desc]";

impl FromStr for KeepPolicy {
    type Err = String;

    /// `first`, `longest`, `shortest`, `field:NAME`, `field:NAME:asc`,
    /// `field:NAME:desc`. A NAME may hold `:` (`field:meta:score` is the
    /// field `meta:score`) unless it ends in `:asc` or `:desc`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "first" => return Ok(KeepPolicy::First),
            "longest" => return Ok(KeepPolicy::Longest),
            "shortest" => return Ok(KeepPolicy::Shortest),
            _ => {}
        }
        let Some(rest) = s.strip_prefix("field:") else {
            return Err(format!("{s:?} is not a keep policy: use {KEEP_SYNTAX}"));
        };
        let (name, descending) = match rest.rsplit_once(':') {
            Some((name, "asc")) => (name, false),
            Some((name, "desc")) => (name, true),
            _ => (rest, true),
        };
        if name.is_empty() {
            return Err(format!(
                "{s:?} names no field: use field:NAME[:asc|desc] (for example field:score)"
            ));
        }
        Ok(KeepPolicy::Field {
            name: name.to_owned(),
            descending,
        })
    }
}

impl fmt::Display for KeepPolicy {
    /// The canonical form, with the field's direction spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepPolicy::First => f.write_str("first"),
            KeepPolicy::Longest => f.write_str("longest"),
            KeepPolicy::Shortest => f.write_str("shortest"),
            KeepPolicy::Field { name, descending } => {
                let direction = if *descending { "desc" } else { "asc" };
                write!(f, "field:{name}:{direction}")
            }
        }
    }
}

impl KeepPolicy {
    /// True for the default, which needs no key.
    pub fn is_first(&self) -> bool {
        *self == KeepPolicy::First
    }

    /// The field the policy ranks by, if it is `field:`.
    pub fn field(&self) -> Option<&str> {
        match self {
            KeepPolicy::Field { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The key of a record whose `text` was read from the JSON object
    /// `json` (`None` for a record that is not one: a plain-text line, a
    /// file); `None` under [`KeepPolicy::First`].
    pub fn key(&self, json: Option<&[u8]>, text: &str) -> Option<KeepKey> {
        match self {
            KeepPolicy::First => None,
            KeepPolicy::Longest | KeepPolicy::Shortest => {
                Some(KeepKey::Length(text.chars().count() as u64))
            }
            KeepPolicy::Field { name, .. } => Some(
                json.and_then(|json| crate::input::json_field(json, name).ok().flatten())
                    .map_or(KeepKey::Missing, KeepKey::of_json),
            ),
        }
    }

    /// True when a record keyed `challenger` is kept rather than one keyed
    /// `holder` that comes before it in input order: only when it ranks
    /// strictly higher (ties go to the first).
    pub fn prefers(&self, challenger: &KeepKey, holder: &KeepKey) -> bool {
        use KeepKey::Length;
        match (self, challenger, holder) {
            (KeepPolicy::Longest, Length(c), Length(h)) => c > h,
            (KeepPolicy::Shortest, Length(c), Length(h)) => c < h,
            (KeepPolicy::Field { descending, .. }, c, h) => {
                let (rc, rh) = (c.class(), h.class());
                if rc != rh {
                    return rc < rh;
                }
                let wanted = if *descending {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                c.compare(h) == Some(wanted)
            }
            _ => false,
        }
    }
}

/// The key of a record that has none in the table (not a candidate).
static MISSING: KeepKey = KeepKey::Missing;

impl KeepPolicy {
    /// The order [`super::clusters::Clusters::from_pairs_keeping`] keeps
    /// by, over the candidates' `keys` (`None` under `first`).
    pub fn ranking<'a>(
        &'a self,
        keys: &'a HashMap<u32, KeepKey>,
    ) -> Option<impl Fn(u32, u32) -> bool + 'a> {
        if self.is_first() {
            return None;
        }
        let key = move |r: u32| keys.get(&r).unwrap_or(&MISSING);
        Some(move |later: u32, earlier: u32| self.prefers(key(later), key(earlier)))
    }

    /// How many of `records` (the clustered records) have no usable value
    /// for the policy's field (0 unless it is `field:`).
    pub fn missing(&self, keys: &HashMap<u32, KeepKey>, records: impl Iterator<Item = u32>) -> u64 {
        if self.field().is_none() {
            return 0;
        }
        records
            .filter(|r| keys.get(r).is_none_or(KeepKey::is_missing))
            .count() as u64
    }
}

impl KeepKey {
    /// The key of a field's JSON text.
    pub fn of_json(value: &RawValue) -> KeepKey {
        let text = value.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(text)
                .map_or(KeepKey::Missing, |s| KeepKey::Text(s.into_boxed_str())),
            Some(b'-' | b'0'..=b'9') => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(n) => KeepKey::of_number(&n),
                Err(_) => KeepKey::Missing,
            },
            _ => KeepKey::Missing,
        }
    }

    fn of_number(n: &serde_json::Number) -> KeepKey {
        if let Some(i) = n.as_i64() {
            KeepKey::Int(i)
        } else if let Some(u) = n.as_u64() {
            KeepKey::UInt(u)
        } else {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map_or(KeepKey::Missing, KeepKey::Float)
        }
    }

    /// True when the record has no usable value for the field.
    pub fn is_missing(&self) -> bool {
        *self == KeepKey::Missing
    }

    /// Numbers first, then strings, then the missing.
    fn class(&self) -> u8 {
        match self {
            KeepKey::Length(_) | KeepKey::Int(_) | KeepKey::UInt(_) | KeepKey::Float(_) => 0,
            KeepKey::Text(_) => 1,
            KeepKey::Missing => 2,
        }
    }

    /// The order of two keys of one class (`None` across classes, and
    /// between two missing values).
    fn compare(&self, other: &KeepKey) -> Option<Ordering> {
        use KeepKey::*;
        match (self, other) {
            (Length(a), Length(b)) | (UInt(a), UInt(b)) => Some(a.cmp(b)),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), UInt(b)) => Some(u64::try_from(*a).map_or(Ordering::Less, |a| a.cmp(b))),
            (UInt(_), Int(_)) => other.compare(self).map(Ordering::reverse),
            (Text(a), Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            KeepKey::Length(n) | KeepKey::UInt(n) => Some(n as f64),
            KeepKey::Int(n) => Some(n as f64),
            KeepKey::Float(f) => Some(f),
            KeepKey::Text(_) | KeepKey::Missing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(policy: &KeepPolicy, json: &str) -> KeepKey {
        policy.key(Some(json.as_bytes()), "").unwrap()
    }

    #[test]
    fn keep_values_parse_and_print_in_their_canonical_form() {
        for (given, canonical) in [
            ("first", "first"),
            ("longest", "longest"),
            ("shortest", "shortest"),
            ("field:score", "field:score:desc"),
            ("field:score:asc", "field:score:asc"),
            ("field:score:desc", "field:score:desc"),
            ("field:meta:score", "field:meta:score:desc"),
            ("field:a:b:asc", "field:a:b:asc"),
        ] {
            let policy: KeepPolicy = given.parse().unwrap();
            assert_eq!(policy.to_string(), canonical);
            assert_eq!(canonical.parse::<KeepPolicy>().unwrap(), policy);
        }
        for bad in [
            "",
            "last",
            "Longest",
            "field",
            "field:",
            "field::asc",
            "random",
        ] {
            let e = bad.parse::<KeepPolicy>().unwrap_err();
            assert!(e.contains("field:NAME"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let k = |text| KeepPolicy::Longest.key(None, text).unwrap();
        assert_eq!(k("héllo 世界"), KeepKey::Length(8));
        assert!(KeepPolicy::Longest.prefers(&k("abcd"), &k("日本語")));
        assert!(KeepPolicy::Shortest.prefers(&k("日本語"), &k("abcd")));
        assert!(!KeepPolicy::Longest.prefers(&k("abc"), &k("日本語")));
        assert_eq!(KeepPolicy::First.key(None, "x"), None);
    }

    #[test]
    fn fields_rank_numbers_then_strings_then_the_missing() {
        let desc: KeepPolicy = "field:s".parse().unwrap();
        let asc: KeepPolicy = "field:s:asc".parse().unwrap();
        let keys = [
            r#"{"s":-3}"#,
            r#"{"s":2.5}"#,
            r#"{"s":3}"#,
            r#"{"s":18446744073709551615}"#,
            r#"{"s":"a"}"#,
            r#"{"s":"b\u00e9"}"#,
            r#"{"s":null}"#,
            r#"{"t":1}"#,
            r#"{"s":[1]}"#,
            r#"{"s":true}"#,
        ]
        .map(|j| key(&desc, j));
        assert_eq!(keys[3], KeepKey::UInt(u64::MAX));
        assert_eq!(keys[5], KeepKey::Text("bé".into()));
        assert!(keys[6..].iter().all(KeepKey::is_missing));
        // Descending: numbers from the highest, then strings from the
        // greatest, then the missing, each a tie with the others.
        let desc_order = [3, 2, 1, 0, 5, 4, 6];
        let asc_order = [0, 1, 2, 3, 4, 5, 6];
        for (policy, order) in [(&desc, desc_order), (&asc, asc_order)] {
            for (i, &a) in order.iter().enumerate() {
                for &b in &order[i + 1..] {
                    assert!(policy.prefers(&keys[a], &keys[b]), "{policy} {a} over {b}");
                    assert!(!policy.prefers(&keys[b], &keys[a]), "{policy} {b} over {a}");
                }
            }
        }
        assert!(!desc.prefers(&keys[7], &keys[6]) && !desc.prefers(&keys[6], &keys[7]));
        assert!(!desc.prefers(&keys[2], &key(&desc, r#"{"s":3.0}"#)));
        assert_eq!(desc.key(None, "text"), Some(KeepKey::Missing));
    }
}
