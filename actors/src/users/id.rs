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

    /// 24 hexadecimal digits, of either case.
    fn from_str(text: &str) -> Result<Self, InvalidUserId> {
        ObjectId::parse_str(text)
            .map(Self)
            .map_err(|_| InvalidUserId)
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
    fn serialises_as_its_hex_string_and_round_trips() {
        let id = UserId::from(ObjectId::new());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(id.to_string().parse::<UserId>(), Ok(id));
        assert_eq!(UserId::from(id.object_id()), id);
    }
}
