//! The one place that serializes state (checkpoints). Everything goes through
//! [`encode`] and [`decode`], so the serialization crate can be swapped by
//! changing this file alone.
//!
//! Layout: magic (8 bytes) | format version (u32 LE) | payload length
//! (u64 LE) | CRC-32 of the payload (u32 LE) | payload (bincode, standard
//! configuration).

use serde::{de::DeserializeOwned, Serialize};

use crate::error::CodecError;

const MAGIC: &[u8; 8] = b"DRNPIPE\x01";
const HEADER: usize = 8 + 4 + 8 + 4;

/// Serializes `value` with a header carrying `version` and a checksum.
pub fn encode<T: Serialize>(value: &T, version: u32) -> Result<Vec<u8>, CodecError> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Payload(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Checks the header and checksum, then deserializes. Refuses anything that
/// is not exactly what [`encode`] wrote for `version`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], version: u32) -> Result<T, CodecError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(CodecError::Version {
            found,
            expected: version,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len || crc32fast::hash(payload) != crc {
        return Err(CodecError::Checksum);
    }
    let (value, used) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| CodecError::Payload(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Payload(
            "trailing bytes after the payload".into(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_damage_is_refused() {
        let value = (42u64, String::from("state"), vec![1u32, 2, 3]);
        let bytes = encode(&value, 3).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u32>)>(&bytes, 3).unwrap(), value);
        assert!(matches!(
            decode::<(u64, String, Vec<u32>)>(&bytes, 4),
            Err(CodecError::Version { found: 3, .. })
        ));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode::<(u64, String, Vec<u32>)>(&flipped, 3),
            Err(CodecError::Checksum)
        ));
        assert!(matches!(
            decode::<(u64, String, Vec<u32>)>(&bytes[..bytes.len() - 1], 3),
            Err(CodecError::Checksum)
        ));
        assert!(matches!(
            decode::<(u64, String, Vec<u32>)>(b"garbage", 3),
            Err(CodecError::BadMagic)
        ));
    }
}
