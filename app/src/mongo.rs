//! The course store in MongoDB or any Mongo-API database (FerretDB, Cosmos DB, Atlas).

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use serde::{Deserialize, Serialize};

use crate::catalog::{Database, DbError};
use crate::course::{Course, CourseFields};

/// Database used when the connection string names none.
pub const DEFAULT_DATABASE: &str = "microcourses";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Doc {
    #[serde(rename = "_id")]
    id: ObjectId,
    title: String,
    description: String,
    #[serde(rename = "durationMinutes")]
    duration_minutes: i64,
}

impl Doc {
    fn new(id: ObjectId, fields: &CourseFields) -> Doc {
        Doc {
            id,
            title: fields.title.clone(),
            description: fields.description.clone(),
            duration_minutes: fields.duration_minutes,
        }
    }

    fn course(self) -> Course {
        Course {
            id: self.id.to_hex(),
            fields: CourseFields {
                title: self.title,
                description: self.description,
                duration_minutes: self.duration_minutes,
            },
        }
    }
}

pub struct Mongo {
    courses: Collection<Doc>,
}

/// Server error codes after which the same call succeeds once a primary is elected again.
const TRANSIENT_CODES: [i32; 12] = [6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];

fn classify(error: Error) -> DbError {
    let transient = match &*error.kind {
        ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        _ => false,
    } || error.contains_label("RetryableWriteError");
    DbError { transient, message: error.to_string() }
}

fn object_id(id: &str) -> Result<ObjectId, DbError> {
    ObjectId::parse_str(id).map_err(|e| DbError { transient: false, message: format!("invalid id: {e}") })
}

fn is_duplicate_key(error: &Error) -> bool {
    match &*error.kind {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

impl Mongo {
    /// Parses the connection string (resolving `mongodb+srv` names); connects lazily, so the
    /// app starts and answers 503 while the database is unreachable.
    pub async fn connect(uri: &str, timeout: Duration) -> Result<Mongo, Error> {
        let mut options = ClientOptions::parse(uri).await?;
        options.app_name = Some("course-app".to_owned());
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let database = options.default_database.clone().unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client = Client::with_options(options)?;
        Ok(Mongo { courses: client.database(&database).collection("courses") })
    }
}

impl Database for Mongo {
    async fn list(&self, after: Option<&str>, limit: i64) -> Result<Vec<Course>, DbError> {
        let filter = match after {
            Some(after) => doc! {"_id": {"$gt": object_id(after)?}},
            None => doc! {},
        };
        let cursor = self.courses.find(filter).sort(doc! {"_id": 1}).limit(limit).await.map_err(classify)?;
        let docs: Vec<Doc> = cursor.try_collect().await.map_err(classify)?;
        Ok(docs.into_iter().map(Doc::course).collect())
    }

    async fn get(&self, id: &str) -> Result<Option<Course>, DbError> {
        let found = self.courses.find_one(doc! {"_id": object_id(id)?}).await.map_err(classify)?;
        Ok(found.map(Doc::course))
    }

    async fn insert(&self, id: &str, fields: &CourseFields) -> Result<(), DbError> {
        let doc = Doc::new(object_id(id)?, fields);
        match self.courses.insert_one(&doc).await {
            Ok(_) => Ok(()),
            // a retry of an insert that did land: the id is ours, so the same document is there
            Err(e) if is_duplicate_key(&e) => {
                match self.courses.find_one(doc! {"_id": doc.id}).await.map_err(classify)? {
                    Some(existing) if existing == doc => Ok(()),
                    _ => Err(DbError { transient: false, message: format!("id {id} already holds another course") }),
                }
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn replace(&self, id: &str, fields: &CourseFields) -> Result<bool, DbError> {
        let oid = object_id(id)?;
        let result = self.courses.replace_one(doc! {"_id": oid}, Doc::new(oid, fields)).await.map_err(classify)?;
        Ok(result.matched_count > 0)
    }

    async fn delete(&self, id: &str) -> Result<bool, DbError> {
        let result = self.courses.delete_one(doc! {"_id": object_id(id)?}).await.map_err(classify)?;
        Ok(result.deleted_count > 0)
    }
}
