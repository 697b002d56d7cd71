//! The versioned binary format of values in the remote tier.
//!
//! Every value is stored as a 7-byte header and a postcard payload:
//!
//! ```text
//! "RC"  format version (u8)  schema version (u32, little endian)  postcard(value)
//! ```
//!
//! The format version is ours ([`FORMAT_VERSION`]); the schema version is
//! the user's, bumped when the value's type changes. A reader that finds
//! another format, another schema or bytes that do not decode gets a
//! [`CodecError`], which the layer treats as a miss: a schema change or a
//! foreign writer never crashes a reader, it only costs a load.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The version of the header layout this crate writes.
pub const FORMAT_VERSION: u8 = 1;

const MAGIC: [u8; 2] = *b"RC";
const HEADER: usize = 7;

/// Encodes and decodes values for the remote tier, tagged with a schema
/// version.
///
/// ```
/// use rampart_cache::remote::Codec;
///
/// let v1 = Codec::new(1);
/// let bytes = v1.encode(&("ada", 36u32)).unwrap();
/// assert_eq!(v1.decode::<(String, u32)>(&bytes).unwrap(), ("ada".to_string(), 36));
/// // A reader of another schema version sees a miss, not a crash.
/// assert!(Codec::new(2).decode::<(String, u32)>(&bytes).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    schema: u32,
}

impl Codec {
    /// A codec writing and accepting values of schema version `schema`.
    pub fn new(schema: u32) -> Self {
        Self { schema }
    }

    /// The schema version this codec writes and accepts.
    pub fn schema(&self) -> u32 {
        self.schema
    }

    /// The header and the value's postcard encoding.
    pub fn encode<V: Serialize>(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.schema.to_le_bytes());
        postcard::to_io(value, &mut out).map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// The value in `bytes`, if they carry this format and schema and
    /// decode; trailing bytes are refused.
    pub fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError> {
        if bytes.len() < HEADER || bytes[..2] != MAGIC {
            return Err(CodecError::NotOurs);
        }
        if bytes[2] != FORMAT_VERSION {
            return Err(CodecError::Format(bytes[2]));
        }
        let schema = u32::from_le_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]);
        if schema != self.schema {
            return Err(CodecError::Schema {
                found: schema,
                expected: self.schema,
            });
        }
        let (value, rest) = postcard::take_from_bytes(&bytes[HEADER..])
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CodecError::Decode(format!("{} trailing bytes", rest.len())));
        }
        Ok(value)
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes do not start with this crate's header (another writer).
    NotOurs,
    /// Another version of the header layout.
    Format(u8),
    /// Another schema version of the value.
    Schema {
        /// The version in the bytes.
        found: u32,
        /// The version this codec accepts.
        expected: u32,
    },
    /// The payload does not decode as the value's type.
    Decode(String),
    /// The value could not be encoded.
    Encode(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOurs => f.write_str("not a rampart cache value (no header)"),
            Self::Format(v) => write!(f, "cache value format {v}, expected {FORMAT_VERSION}"),
            Self::Schema { found, expected } => {
                write!(f, "cache value schema {found}, expected {expected}")
            }
            Self::Decode(e) => write!(f, "cache value does not decode: {e}"),
            Self::Encode(e) => write!(f, "cache value does not encode: {e}"),
        }
    }
}

impl std::error::Error for CodecError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(s in ".*", n in any::<u64>(), v in prop::collection::vec(any::<u8>(), 0..64)) {
            let c = Codec::new(3);
            let bytes = c.encode(&(s.clone(), n, v.clone())).unwrap();
            prop_assert_eq!(c.decode::<(String, u64, Vec<u8>)>(&bytes).unwrap(), (s, n, v));
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Codec::new(1).decode::<(String, u64)>(&bytes);
        }
    }

    #[test]
    fn foreign_and_other_versions_are_refused() {
        let c = Codec::new(1);
        let mut bytes = c.encode(&7u32).unwrap();
        assert_eq!(c.decode::<u32>(b"hello world"), Err(CodecError::NotOurs));
        assert_eq!(
            Codec::new(2).decode::<u32>(&bytes),
            Err(CodecError::Schema {
                found: 1,
                expected: 2
            })
        );
        bytes[2] = 9;
        assert_eq!(c.decode::<u32>(&bytes), Err(CodecError::Format(9)));
        let mut long = c.encode(&7u32).unwrap();
        long.push(0);
        assert!(matches!(c.decode::<u32>(&long), Err(CodecError::Decode(_))));
        // a changed type of the same schema decodes to an error, not garbage
        let s = c.encode(&"text").unwrap();
        assert!(c.decode::<(u64, u64, u64)>(&s).is_err());
    }
}
