//! course-operator: turns one `CourseService` into a zone-aware, highly available course
//! application. Planning, validation and rendering are pure modules; the controller shell
//! applies their output to the cluster.
#![forbid(unsafe_code)]

pub mod api;
pub mod cached;
pub mod conditions;
pub mod controller;
pub mod database;
pub mod labels;
pub mod manifest;
pub mod names;
pub mod observe;
pub mod plan;
pub mod plugin;
pub mod quantity;
pub mod render;
pub mod rollout;
pub mod status;
pub mod validate;
pub mod zones;
