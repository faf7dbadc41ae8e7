//! Pass 1's step 1 on worker hosts (`--nats`, `docs/DISTRIBUTED.md`): what
//! a worker needs to build the same [`SignatureJob`] (its parameters), and
//! how a [`Signed`] output travels back. Step 1 is the whole cost of pass
//! 1 (shingling and MinHash); its output is small (a key per band).

use drainpipe_actors::codec;
use drainpipe_actors::remote::RemoteJob;
use drainpipe_actors::Span;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SignatureJob;
use crate::input::TextFields;
use crate::jobs::dedup::minhash::BandKeys;
use crate::jobs::dedup::params::Banding;
use crate::jobs::dedup::spans::Place;

/// The name workers know pass 1 by (`src/jobs/registry.rs`).
pub const REMOTE_NAME: &str = "dedup-signatures";
/// Version of the parameters below.
const PARAMS_VERSION: u32 = 1;

/// `(text field, id field, ngram, bands, rows)`.
type Params = (String, String, u64, u64, u64);

impl RemoteJob for SignatureJob {
    fn params(&self) -> Vec<u8> {
        let params: Params = (
            self.fields.text.clone(),
            self.fields.id.clone(),
            self.ngram as u64,
            self.banding.bands as u64,
            self.banding.rows as u64,
        );
        codec::encode(&params, PARAMS_VERSION).expect("strings and numbers always encode")
    }

    fn remote_name(&self) -> &str {
        REMOTE_NAME
    }
}

impl SignatureJob {
    /// The job [`RemoteJob::params`] describes, on a worker host.
    pub fn from_params(params: &[u8]) -> Result<Self, String> {
        let (text, id, ngram, bands, rows): Params =
            codec::decode(params, PARAMS_VERSION).map_err(|e| e.to_string())?;
        let banding = Banding {
            bands: bands as usize,
            rows: rows as usize,
        };
        if ngram == 0 || bands == 0 || rows == 0 || bands * rows > 1 << 16 {
            return Err(format!(
                "unusable parameters: {ngram}-word shingles, {bands} x {rows}"
            ));
        }
        Ok(SignatureJob::new(
            TextFields { text, id },
            ngram as usize,
            banding,
        ))
    }
}

/// A [`Place`] as it travels: `(input, offset)` when known, length, line.
type PlaceForm = (Option<(u32, u64)>, u64, u64);

impl Serialize for Place {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let form: PlaceForm = (
            self.span.map(|sp| (sp.input, sp.offset)),
            self.len as u64,
            self.line,
        );
        form.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Place {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (span, len, line) = PlaceForm::deserialize(d)?;
        Ok(Place {
            span: span.map(|(input, offset)| Span { input, offset }),
            len: len as usize,
            line,
        })
    }
}

impl Serialize for BandKeys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for BandKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let keys = Vec::<u32>::deserialize(d)?;
        Ok(BandKeys::from_keys(&keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drainpipe_actors::Job;

    #[test]
    fn a_worker_builds_pass_1_from_its_parameters_and_its_output_round_trips() {
        let banding = Banding { bands: 40, rows: 3 };
        let fields = TextFields {
            text: "body".into(),
            id: "key".into(),
        };
        let job = SignatureJob::new(fields, 5, banding);
        let rebuilt = SignatureJob::from_params(&job.params()).unwrap();
        let text = "the quick brown fox jumps over the lazy dog again and again";
        assert_eq!(
            job.band_keys(text).as_slice(),
            rebuilt.band_keys(text).as_slice()
        );
        assert_eq!(rebuilt.name(), "dedup");
        let place = Place {
            span: Some(Span {
                input: 2,
                offset: 99,
            }),
            len: 7,
            line: 3,
        };
        let signed = (job.band_keys(text), place, 42u64);
        let bytes = codec::encode(&signed, 1).unwrap();
        let (keys, back, id): (BandKeys, Place, u64) = codec::decode(&bytes, 1).unwrap();
        assert_eq!(
            (keys.as_slice(), back, id),
            (signed.0.as_slice(), place, 42)
        );
        assert!(SignatureJob::from_params(b"junk").is_err());
    }
}
