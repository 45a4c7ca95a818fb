//! `JsonObject<T>`: a body that must be a JSON object. Serde's derive also
//! reads structs from arrays (`["a@b.co", "pw"]` would be a login), which no
//! client means; this refuses them while keeping field paths for errors.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug)]
pub struct JsonObject<T>(pub T);

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData))
            .map(JsonObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasklog_platform::json::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn objects_pass_and_arrays_are_refused_with_field_paths_kept() {
        assert!(parse::<JsonObject<Login>>(br#"{"email": "a@b.co"}"#).is_ok());
        let array = parse::<JsonObject<Login>>(br#"["a@b.co"]"#).unwrap_err();
        assert_eq!(array.status_code(), 422);
        let Err(tasklog_platform::ApiError::Unprocessable { errors, .. }) =
            parse::<JsonObject<Login>>(br#"{"email": "x", "tags": [1]}"#)
        else {
            panic!("expected a 422");
        };
        assert_eq!(errors[0].field, "tags[0]");
    }
}
