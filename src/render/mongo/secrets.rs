//! The database's Secrets: the generated credentials Secret the members and Jobs read, and
//! the application's connection string.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::replica_set;
use crate::api::DatabaseSpec;
use crate::database::DatabaseCredentials;
use crate::database::credentials::{APP_DATABASE, APP_USERNAME};
use crate::labels::{self, Component};
use crate::names;
use crate::render::Context;

/// Secret `<name>-db-credentials` with `keyfile`, the root user (`username`, `password`) and
/// the application user (`app-username`, `app-password`). The controller creates it once and
/// never changes or deletes a key: losing it locks the members out. Keys a newer version adds
/// are added to an existing Secret.
pub fn credentials_secret(ctx: &Context<'_>, creds: &DatabaseCredentials) -> Secret {
    let mut metadata = ctx.meta(names::database_credentials_secret(ctx.name), Component::Database, BTreeMap::new());
    metadata.annotations.get_or_insert_default().insert(labels::GENERATED.to_owned(), "true".to_owned());
    Secret { metadata, type_: Some("Opaque".to_owned()), data: Some(creds.secret_data()), ..Secret::default() }
}

/// Connection string of the application: every data member as seed, the course database,
/// the replica set, the application's user (never root; it is defined in `admin`). The
/// password is alphanumeric, so it needs no escaping.
pub fn connection_uri(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials) -> String {
    format!(
        "mongodb://{APP_USERNAME}:{}@{}/{APP_DATABASE}?replicaSet={}&authSource=admin",
        creds.app_password,
        replica_set(ctx).seed_list(db.members),
        names::database_replica_set(ctx.name)
    )
}

/// Secret [`names::database_app_secret`] with the application's connection string under
/// [`names::DATABASE_URI_KEY`].
pub fn app_secret(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials) -> Secret {
    Secret {
        metadata: ctx.meta(names::database_app_secret(ctx.name), Component::Database, BTreeMap::new()),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            names::DATABASE_URI_KEY.to_owned(),
            ByteString(connection_uri(ctx, db, creds).into_bytes()),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::credentials::{
        ADMIN_USERNAME, APP_PASSWORD_KEY, APP_USERNAME_KEY, PASSWORD_KEY, PASSWORD_LEN,
    };
    use crate::render::mongo::test_support::{database, fake_credentials, full_stack};

    #[test]
    fn credentials_round_trip_through_their_secret() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = DatabaseCredentials::generate();
        let secret = credentials_secret(&ctx, &creds);
        assert_eq!(secret.metadata.name.as_deref(), Some("academy-db-credentials"));
        assert_eq!(DatabaseCredentials::from_secret(&secret).as_ref(), Some(&creds));
        assert!(creds.is_stored_in(&secret));
    }

    #[test]
    fn a_secret_from_before_the_application_user_keeps_root_and_keyfile_and_gains_an_app_password() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = DatabaseCredentials::generate();
        let mut old = credentials_secret(&ctx, &creds);
        let data = old.data.as_mut().expect("data");
        data.remove(APP_USERNAME_KEY);
        data.remove(APP_PASSWORD_KEY);

        let read = DatabaseCredentials::from_secret(&old).expect("root and keyfile are enough");
        assert_eq!((&read.keyfile, &read.admin_password), (&creds.keyfile, &creds.admin_password));
        assert_eq!(read.app_password.len(), PASSWORD_LEN);
        assert_ne!(read.app_password, creds.app_password, "generated anew, not guessed");
        assert!(!read.is_stored_in(&old), "the app keys still have to be added");

        // What the operator then adds: exactly the two missing keys; the old ones unchanged.
        let desired = credentials_secret(&ctx, &read);
        let desired_data = desired.data.expect("data");
        for (key, value) in old.data.as_ref().expect("data") {
            assert_eq!(desired_data.get(key), Some(value), "{key} kept");
        }
        assert_eq!(desired_data.len(), old.data.as_ref().map_or(0, BTreeMap::len) + 2);
        assert_eq!(desired_data.get(APP_USERNAME_KEY).map(|b| b.0.as_slice()), Some(APP_USERNAME.as_bytes()));

        let mut no_root = credentials_secret(&ctx, &creds);
        no_root.data.as_mut().expect("data").remove(PASSWORD_KEY);
        assert_eq!(DatabaseCredentials::from_secret(&no_root), None, "root is never made up");
    }

    #[test]
    fn the_credentials_secret_is_marked_generated_and_the_app_secret_is_not() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let generated = |s: &Secret| s.metadata.annotations.as_ref().and_then(|a| a.get(labels::GENERATED)).cloned();
        assert_eq!(generated(&credentials_secret(&ctx, &fake_credentials())).as_deref(), Some("true"));
        assert_eq!(generated(&app_secret(&ctx, &database(3, false), &fake_credentials())), None);
    }

    #[test]
    fn application_uri_names_the_app_user_and_every_data_member_never_root() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = fake_credentials();
        let uri = connection_uri(&ctx, &database(3, false), &creds);
        let password = "A".repeat(32);
        assert_eq!(
            uri,
            format!(
                "mongodb://course-app:{password}@academy-db-0.academy-db-headless.default.svc.cluster.local:27017,\
                 academy-db-1.academy-db-headless.default.svc.cluster.local:27017,\
                 academy-db-2.academy-db-headless.default.svc.cluster.local:27017/\
                 microcourses?replicaSet=academy-db&authSource=admin"
            )
        );
        assert!(!uri.contains(&creds.admin_password) && !uri.contains(&format!("//{ADMIN_USERNAME}:")));
    }
}
