//! A course and the validation of what clients send.

use serde::{Deserialize, Serialize};

/// Longest accepted title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX: usize = 4000;
/// Longest accepted duration: one week of minutes.
pub const DURATION_MAX: i64 = 7 * 24 * 60;

/// A stored course as clients see it; `id` is set by the server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: String,
    #[serde(flatten)]
    pub fields: CourseFields,
}

/// What a client may set on a course (the body of POST and PUT).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CourseFields {
    pub title: String,
    pub description: String,
    pub duration_minutes: i64,
}

/// A 4xx answer naming the field that was wrong.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub error: String,
}

impl Invalid {
    fn new(field: &str, error: impl Into<String>) -> Self {
        Self { field: field.to_owned(), error: error.into() }
    }
}

/// Parses and validates a request body: unknown fields, missing fields, wrong types, blank
/// or too long text and out-of-range durations are refused with the field's name.
pub fn parse(body: &[u8]) -> Result<CourseFields, Invalid> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Invalid::new("body", format!("not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| Invalid::new("body", "must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !matches!(k.as_str(), "title" | "description" | "durationMinutes")) {
        let error = if unknown == "id" { "is set by the server" } else { "is not a course field" };
        return Err(Invalid::new(unknown, error));
    }
    let text = |field: &str, max: usize, required_non_blank: bool| -> Result<String, Invalid> {
        let value = object.get(field).ok_or_else(|| Invalid::new(field, "is required"))?;
        let text = value.as_str().ok_or_else(|| Invalid::new(field, "must be a string"))?;
        if required_non_blank && text.trim().is_empty() {
            return Err(Invalid::new(field, "must not be blank"));
        }
        if text.chars().count() > max {
            return Err(Invalid::new(field, format!("must be at most {max} characters")));
        }
        Ok(text.to_owned())
    };
    let title = text("title", TITLE_MAX, true)?;
    let description = text("description", DESCRIPTION_MAX, false)?;
    let duration = object.get("durationMinutes").ok_or_else(|| Invalid::new("durationMinutes", "is required"))?;
    let duration_minutes = duration
        .as_i64()
        .filter(|d| (1..=DURATION_MAX).contains(d))
        .ok_or_else(|| Invalid::new("durationMinutes", format!("must be a whole number from 1 to {DURATION_MAX}")))?;
    Ok(CourseFields { title, description, duration_minutes })
}

/// Whether `id` can name a course (24 lowercase hex digits, a MongoDB ObjectId).
pub fn is_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        parse(body.as_bytes()).map(|_| String::new()).unwrap_or_else(|e| e.field)
    }

    #[test]
    fn a_complete_course_is_accepted() {
        let fields = parse(br#"{"title":"Rust","description":"","durationMinutes":90}"#).unwrap();
        assert_eq!(fields, CourseFields { title: "Rust".into(), description: String::new(), duration_minutes: 90 });
    }

    #[test]
    fn every_refusal_names_its_field() {
        assert_eq!(field_of("nope"), "body");
        assert_eq!(field_of("[1]"), "body");
        assert_eq!(field_of(r#"{"description":"d","durationMinutes":1}"#), "title");
        assert_eq!(field_of(r#"{"title":"  ","description":"d","durationMinutes":1}"#), "title");
        assert_eq!(
            field_of(&format!(r#"{{"title":"{}","description":"d","durationMinutes":1}}"#, "x".repeat(201))),
            "title"
        );
        assert_eq!(field_of(r#"{"title":"t","durationMinutes":1}"#), "description");
        assert_eq!(field_of(r#"{"title":"t","description":7,"durationMinutes":1}"#), "description");
        assert_eq!(field_of(r#"{"title":"t","description":"d"}"#), "durationMinutes");
        assert_eq!(field_of(r#"{"title":"t","description":"d","durationMinutes":0}"#), "durationMinutes");
        assert_eq!(field_of(r#"{"title":"t","description":"d","durationMinutes":1.5}"#), "durationMinutes");
        assert_eq!(field_of(r#"{"title":"t","description":"d","durationMinutes":10081}"#), "durationMinutes");
        assert_eq!(field_of(r#"{"id":"x","title":"t","description":"d","durationMinutes":1}"#), "id");
        assert_eq!(field_of(r#"{"title":"t","description":"d","durationMinutes":1,"price":3}"#), "price");
    }

    #[test]
    fn ids_are_object_ids() {
        assert!(is_id("65a1b2c3d4e5f60718293a4b"));
        assert!(!is_id("65A1B2C3D4E5F60718293A4B"));
        assert!(!is_id("65a1b2c3"));
        assert!(!is_id("../../etc/passwd/xxxxxxxxx"));
    }

    #[test]
    fn the_json_shape_is_flat_and_camel_case() {
        let course = Course {
            id: "65a1b2c3d4e5f60718293a4b".into(),
            fields: CourseFields { title: "t".into(), description: "d".into(), duration_minutes: 5 },
        };
        let json = serde_json::to_value(&course).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"65a1b2c3d4e5f60718293a4b","title":"t","description":"d","durationMinutes":5})
        );
    }
}
