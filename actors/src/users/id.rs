//! [`UserId`]: a user's id, parsed once on the way in.

use std::fmt;
use std::str::FromStr;

use mongodb::bson::oid::ObjectId;
use serde::{Serialize, Serializer};

/// A user's id: 24 hexadecimal digits (a MongoDB ObjectId underneath, which
/// no caller outside this crate needs to know). Displayed and serialised
/// as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(ObjectId);

/// The text is not a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 24 hexadecimal digits")]
pub struct InvalidUserId;

impl UserId {
    /// The stored `_id`.
    pub(crate) fn object_id(self) -> ObjectId {
        self.0
    }
}

impl From<ObjectId> for UserId {
    fn from(id: ObjectId) -> Self {
        Self(id)
    }
}

impl FromStr for UserId {
    type Err = InvalidUserId;

    /// 24 hexadecimal digits, of either case. Decoded on the stack: the
    /// hottest route parses one per request, and `ObjectId::parse_str`
    /// allocates a `Vec` for the bytes (`docs/performance.md`).
    fn from_str(text: &str) -> Result<Self, InvalidUserId> {
        let mut bytes = [0u8; 12];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidUserId)?;
        Ok(Self(ObjectId::from_bytes(bytes)))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_hex())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({self})")
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_24_hex_digits_of_either_case_and_displays_lower_case() {
        for raw in ["65f1c0ffee0000000000beef", "65F1C0FFEE0000000000BEEF"] {
            let id: UserId = raw.parse().unwrap();
            assert_eq!(id.to_string(), "65f1c0ffee0000000000beef");
            assert_eq!(format!("{id:?}"), "UserId(65f1c0ffee0000000000beef)");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in [
            "",
            "65f1c0ffee0000000000bee",
            "65f1c0ffee0000000000beef0",
            "65f1c0ffee0000000000beeg",
            " 65f1c0ffee0000000000beef",
            "65f1c0ffee0000000000beef\n",
        ] {
            assert_eq!(raw.parse::<UserId>(), Err(InvalidUserId), "{raw:?}");
        }
    }

    #[test]
    fn decodes_as_bson_does_whatever_the_digit() {
        // Every byte value in the last place, and 24 bytes that are not 24
        // characters (a two-byte character): the same answer as
        // `ObjectId::parse_str`, which the stack decode replaced.
        let mut raws: Vec<String> = (0..=255u8)
            .map(|b| format!("65f1c0ffee0000000000bee{}", char::from(b)))
            .collect();
        raws.push("65f1c0ffee0000000000be\u{e9}".into());
        raws.push("0123456789abcdefABCDEF00".into());
        for raw in &raws {
            let ours = raw.parse::<UserId>().ok().map(UserId::object_id);
            assert_eq!(ours, ObjectId::parse_str(raw).ok(), "{raw:?}");
        }
        let valid = raws.iter().filter(|raw| raw.parse::<UserId>().is_ok());
        assert_eq!(
            valid.count(),
            23,
            "22 hex digits in the last place, and one more"
        );
    }

    #[test]
    fn serialises_as_its_hex_string_and_round_trips() {
        let id = UserId::from(ObjectId::new());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(id.to_string().parse::<UserId>(), Ok(id));
        assert_eq!(UserId::from(id.object_id()), id);
    }
}
