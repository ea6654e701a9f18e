//! pycolytics' API (`POST /v1.0/event`, `POST /v1.0/events`): the body's shape.
//!
//! A pycolytics event is a JSON object with six required strings (`event_type`,
//! `application`, `version`, `platform`, `user_id`, `session_id`), an optional `value` that
//! must be a JSON **object** (pycolytics' default is `{}`), and an optional `api_key` string.
//! Other keys are ignored, as pydantic does. `/v1.0/event` takes one such object,
//! `/v1.0/events` an array of them (an empty array is fine: nothing to store).
//!
//! The HTTP layer calls [`validate`] before it answers (a wrong shape is a 422 carrying
//! [`ShapeError`]'s message, a body that is not JSON a 400); the publisher calls [`parse`] on the
//! stored body and maps each item to a row ([`crate::publish::map::pycolytics`]).
//!
//! Parsing borrows strings from the body (only strings with escapes are copied) and, in
//! [`validate`], checks `value`'s shape without building it.
//!

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::wire::route::Route;
use crate::wire::snowplow::BorrowedText;

/// `source` of pycolytics rows.
pub const SOURCE: &str = "pycolytics";
/// `event` of pycolytics rows (what happened is `event_name`).
pub const EVENT: &str = "pycolytics";

/// The two pycolytics routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/v1.0/event`: one object.
    One,
    /// `/v1.0/events`: an array of objects.
    Many,
}

impl Shape {
    /// The shape a route template expects, or `None` for other routes.
    pub fn of_route(route: &str) -> Option<Shape> {
        match Route::of_template(route)? {
            Route::PycolyticsEvent => Some(Shape::One),
            Route::PycolyticsEvents => Some(Shape::Many),
            _ => None,
        }
    }
}

/// Why a pycolytics body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The body is not JSON at all (answer 400).
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON of the wrong shape (answer 422): a missing or non-string required field,
    /// a `value` that is not an object, an array where one object was expected, ….
    #[error("{0}")]
    Shape(String),
}

impl ShapeError {
    /// A stable, short identifier for metric labels and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ShapeError::Json(_) => "invalid_json",
            ShapeError::Shape(_) => "invalid_shape",
        }
    }
}

/// One pycolytics event, its strings borrowed from the body where possible. `V` is what
/// `value` becomes: [`AnyObject`] (shape checked, contents skipped) or [`JsonObject`].
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a, V> {
    /// `event_type`: what happened.
    pub event_type: Cow<'a, str>,
    /// `application`: which application sent it.
    pub application: Cow<'a, str>,
    /// `version`: the application's version.
    pub version: Cow<'a, str>,
    /// `platform`: where the application runs (free text).
    pub platform: Cow<'a, str>,
    /// `user_id`.
    pub user_id: Cow<'a, str>,
    /// `session_id`.
    pub session_id: Cow<'a, str>,
    /// `value`, `None` when absent.
    pub value: Option<V>,
    /// `api_key`, `None` when absent. Only for authorisation: never stored in a column.
    pub api_key: Option<Cow<'a, str>>,
}

/// A `value` whose shape (a JSON object) was checked and whose contents were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyObject;

/// A `value` kept as a parsed JSON object.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Checks a body's shape without building `value`s; the items carry the `api_key`s to check.
pub fn validate(shape: Shape, body: &[u8]) -> Result<Vec<Item<'_, AnyObject>>, ShapeError> {
    decode(shape, body)
}

/// Parses a body, keeping each `value` (for the publisher).
pub fn parse(shape: Shape, body: &[u8]) -> Result<Vec<Item<'_, JsonObject>>, ShapeError> {
    decode(shape, body)
}

fn decode<'a, V: ObjectValue<'a>>(
    shape: Shape,
    body: &'a [u8],
) -> Result<Vec<Item<'a, V>>, ShapeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = match shape {
        Shape::One => de.deserialize_any(OneVisitor(PhantomData)).map(|i| vec![i]),
        Shape::Many => de.deserialize_any(ManyVisitor(PhantomData)),
    }
    .and_then(|items| de.end().map(|()| items))
    .map_err(|e| {
        // Errors are re-raised with the field or item they concern, which makes them all look
        // like data errors: on the (rare) error path, tell syntax from shape with a plain parse.
        match serde_json::from_slice::<IgnoredAny>(body) {
            Err(syntax) if syntax.classify() != serde_json::error::Category::Data => {
                ShapeError::Json(syntax.to_string())
            }
            _ => ShapeError::Shape(e.to_string()),
        }
    })?;
    Ok(items)
}

/// How `value` is read: an object, or an error naming what it was instead.
trait ObjectValue<'de>: Sized {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

impl<'de> ObjectValue<'de> for AnyObject {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object for `value`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                while map.next_entry::<IgnoredAny, Check>()?.is_some() {}
                Ok(AnyObject)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value, read as [`serde_json::Value`] reads it (so a number out of `f64`'s range
/// fails here too) but without building it.
struct Check;

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Check;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Check, E> {
                Ok(Check)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Check, A::Error> {
                while seq.next_element::<Check>()?.is_some() {}
                Ok(Check)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Check, A::Error> {
                while map.next_entry::<IgnoredAny, Check>()?.is_some() {}
                Ok(Check)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> ObjectValue<'de> for JsonObject {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object for `value`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut out = JsonObject::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

struct OneVisitor<V>(PhantomData<V>);

impl<'de, V: ObjectValue<'de>> Visitor<'de> for OneVisitor<V> {
    type Value = Item<'de, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one pycolytics event object (an array goes to /v1.0/events)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_item(map)
    }
}

struct ManyVisitor<V>(PhantomData<V>);

impl<'de, V: ObjectValue<'de>> Visitor<'de> for ManyVisitor<V> {
    type Value = Vec<Item<'de, V>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of pycolytics event objects (one object goes to /v1.0/event)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The size hint is the client's claim: cap what it reserves.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let index = out.len();
            match seq.next_element_seed(ItemSeed(PhantomData)) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => return Ok(out),
                Err(e) => return Err(de::Error::custom(format_args!("event {index}: {e}"))),
            }
        }
    }
}

struct ItemSeed<V>(PhantomData<V>);

impl<'de, V: ObjectValue<'de>> DeserializeSeed<'de> for ItemSeed<V> {
    type Value = Item<'de, V>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(OneVisitor(PhantomData))
    }
}

/// A `value` field, read by `V`'s [`ObjectValue`] rule.
struct Value<V>(V);

impl<'de, V: ObjectValue<'de>> Deserialize<'de> for Value<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        V::read(d).map(Value)
    }
}

const REQUIRED: [&str; 6] = [
    "event_type",
    "application",
    "version",
    "platform",
    "user_id",
    "session_id",
];

fn read_item<'de, A: MapAccess<'de>, V: ObjectValue<'de>>(
    mut map: A,
) -> Result<Item<'de, V>, A::Error> {
    let mut fields: [Option<Cow<'de, str>>; 6] = Default::default();
    let mut value: Option<V> = None;
    let mut api_key: Option<Cow<'de, str>> = None;
    while let Some(BorrowedText(key)) = map.next_key::<BorrowedText<'de>>()? {
        let key = key.as_ref();
        let field_err = |e: A::Error| de::Error::custom(format_args!("`{key}`: {e}"));
        if let Some(i) = REQUIRED.iter().position(|r| *r == key) {
            if fields[i].is_some() {
                return Err(de::Error::custom(format_args!("`{key}` appears twice")));
            }
            fields[i] = Some(map.next_value::<BorrowedText<'de>>().map_err(field_err)?.0);
        } else if key == "value" {
            if value.is_some() {
                return Err(de::Error::custom("`value` appears twice"));
            }
            value = Some(map.next_value::<Value<V>>().map_err(field_err)?.0);
        } else if key == "api_key" {
            if api_key.is_some() {
                return Err(de::Error::custom("`api_key` appears twice"));
            }
            api_key = Some(map.next_value::<BorrowedText<'de>>().map_err(field_err)?.0);
        } else {
            map.next_value::<IgnoredAny>()?;
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .zip(&fields)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        return Err(de::Error::custom(format_args!(
            "missing required string field(s): {}",
            missing
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let [event_type, application, version, platform, user_id, session_id] =
        fields.map(Option::unwrap_or_default);
    Ok(Item {
        event_type,
        application,
        version,
        platform,
        user_id,
        session_id,
        value,
        api_key,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"{"event_type":"level_up","application":"game","version":"1.2","platform":"linux","user_id":"u1","session_id":"s1","value":{"level":3},"api_key":"k"}"#;

    #[test]
    fn one_event_parses_with_its_value_and_key() {
        let items = parse(Shape::One, GOOD.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
        let i = &items[0];
        assert_eq!(
            (
                &*i.event_type,
                &*i.application,
                &*i.version,
                &*i.platform,
                &*i.user_id,
                &*i.session_id
            ),
            ("level_up", "game", "1.2", "linux", "u1", "s1")
        );
        assert_eq!(i.value.as_ref().unwrap()["level"], 3);
        assert_eq!(i.api_key.as_deref(), Some("k"));
        assert!(matches!(i.event_type, Cow::Borrowed(_)));
        let v = validate(Shape::One, GOOD.as_bytes()).unwrap();
        assert_eq!(v[0].value, Some(AnyObject));
    }

    #[test]
    fn a_batch_parses_every_item_and_an_empty_batch_is_empty() {
        let body = format!("[{GOOD},{GOOD}]");
        assert_eq!(parse(Shape::Many, body.as_bytes()).unwrap().len(), 2);
        assert!(parse(Shape::Many, b" [ ] ").unwrap().is_empty());
    }

    #[test]
    fn value_and_api_key_are_optional_and_unknown_keys_ignored() {
        let body = r#"{"event_type":"a","application":"b","version":"c","platform":"d","user_id":"e","session_id":"f","extra":[1,{"x":null}]}"#;
        let i = &parse(Shape::One, body.as_bytes()).unwrap()[0];
        assert_eq!((i.value.as_ref(), i.api_key.as_ref()), (None, None));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = r#"{"event_type":"a\"b\u00e9","application":"b","version":"c","platform":"d","user_id":"e","session_id":"f"}"#;
        assert_eq!(
            parse(Shape::One, body.as_bytes()).unwrap()[0].event_type,
            "a\"bé"
        );
    }

    fn shape_error(shape: Shape, body: &str) -> String {
        match validate(shape, body.as_bytes()) {
            Err(ShapeError::Shape(m)) => {
                assert!(matches!(
                    parse(shape, body.as_bytes()),
                    Err(ShapeError::Shape(_))
                ));
                m
            }
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_value_that_is_not_an_object_is_a_shape_error_naming_value() {
        for v in ["[1]", "\"x\"", "1", "null", "true"] {
            let body = GOOD.replace(r#"{"level":3}"#, v);
            let m = shape_error(Shape::One, &body);
            assert!(m.contains("`value`"), "{m}");
        }
    }

    #[test]
    fn missing_or_non_string_required_fields_are_named() {
        let m = shape_error(Shape::One, r#"{"event_type":"a","version":"c"}"#);
        for k in ["`application`", "`platform`", "`user_id`", "`session_id`"] {
            assert!(m.contains(k), "{m}");
        }
        assert!(!m.contains("`version`"), "{m}");
        let m = shape_error(Shape::One, &GOOD.replace(r#""u1""#, "7"));
        assert!(m.contains("`user_id`") && m.contains("string"), "{m}");
        let m = shape_error(Shape::One, &GOOD.replace(r#""k""#, "null"));
        assert!(m.contains("`api_key`"), "{m}");
    }

    #[test]
    fn batch_errors_name_the_item_and_shapes_must_match_the_route() {
        let body = format!("[{GOOD},{{}}]");
        let m = shape_error(Shape::Many, &body);
        assert!(m.contains("event 1"), "{m}");
        assert!(shape_error(Shape::Many, GOOD).contains("array"));
        assert!(shape_error(Shape::One, &format!("[{GOOD}]")).contains("object"));
        assert!(shape_error(Shape::Many, "[1]").contains("event 0"));
        let twice = GOOD.replace(r#""api_key":"k""#, r#""user_id":"u2""#);
        assert!(shape_error(Shape::One, &twice).contains("twice"));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_json_error() {
        for body in ["", "{", "{\"event_type\":", "[1,", "\u{0}"] {
            assert!(
                matches!(
                    validate(Shape::One, body.as_bytes()),
                    Err(ShapeError::Json(_))
                ) || matches!(
                    validate(Shape::Many, body.as_bytes()),
                    Err(ShapeError::Json(_))
                ),
                "{body:?}"
            );
        }
        assert!(matches!(
            validate(Shape::Many, b"[] []"),
            Err(ShapeError::Json(_))
        ));
    }

    #[test]
    fn validate_and_parse_agree_on_values_json_itself_accepts() {
        for v in [
            r#"{"x":1e400}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"x":-0}"#,
            r#"{"a":1,"a":2}"#,
        ] {
            let body = GOOD.replace(r#"{"level":3}"#, v);
            let a = validate(Shape::One, body.as_bytes()).map(|i| i.len());
            let b = parse(Shape::One, body.as_bytes()).map(|i| i.len());
            assert_eq!(a, b, "{v}");
        }
    }

    #[test]
    fn routes_map_to_shapes() {
        assert_eq!(Shape::of_route("/v1.0/event"), Some(Shape::One));
        assert_eq!(Shape::of_route("/v1.0/events"), Some(Shape::Many));
        assert_eq!(Shape::of_route("/v1/track"), None);
    }
}
