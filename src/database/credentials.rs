//! The database's credentials: the members' shared keyfile, the root user's password (for the
//! Jobs) and the application user's, with the users and keys they are stored under.
//! [`DatabaseCredentials::generate`] draws them from the operating system's randomness (and
//! [`DatabaseCredentials::from_secret`] draws an application password a Secret from before the
//! application user lacks); everything else here is pure. `Debug` never prints a secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::RngExt;

/// The root user the image's entrypoint creates on each member's first start.
pub const ADMIN_USERNAME: &str = "admin";
/// The application's user, created by the init Job: `readWrite` on [`APP_DATABASE`] only.
pub const APP_USERNAME: &str = "course-app";
/// The course database, the only one the application's user may read and write. The course
/// app's default too; the connection string names it, so the app uses it whatever its default.
pub const APP_DATABASE: &str = "microcourses";
/// Keys of the credentials Secret.
pub const KEYFILE_KEY: &str = "keyfile";
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
pub const APP_USERNAME_KEY: &str = "app-username";
pub const APP_PASSWORD_KEY: &str = "app-password";

/// Length of the keyfile (base64 alphabet: 6 bits per character).
pub const KEYFILE_LEN: usize = 756;
/// Length of each password (alphanumeric, so connection strings need no escaping).
pub const PASSWORD_LEN: usize = 32;
const BASE64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Generated secrets of the database. Created once; the controller never regenerates them,
/// because members and the application keep using the first ones.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseCredentials {
    /// Shared secret the members authenticate each other with (base64 alphabet, 756 chars).
    pub keyfile: String,
    /// Password of the root user `admin`: only the init and backup Jobs use it.
    pub admin_password: String,
    /// Password of the application's user [`APP_USERNAME`].
    pub app_password: String,
}

impl std::fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("keyfile", &format_args!("<redacted, {} chars>", self.keyfile.len()))
            .field("admin_password", &format_args!("<redacted>"))
            .field("app_password", &format_args!("<redacted>"))
            .finish()
    }
}

impl DatabaseCredentials {
    /// Fresh credentials from the thread-local CSPRNG (ChaCha seeded by the operating system).
    /// Drawing characters uniformly from the 64-character alphabet carries the same entropy
    /// as base64 of random bytes (6 bits per character).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut draw = |alphabet: &[u8], len: usize| -> String {
            (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
        };
        Self {
            keyfile: draw(BASE64_ALPHABET, KEYFILE_LEN),
            admin_password: draw(ALPHANUMERIC, PASSWORD_LEN),
            app_password: draw(ALPHANUMERIC, PASSWORD_LEN),
        }
    }

    /// The credentials stored in an existing credentials Secret, to render the application
    /// Secret with the passwords the members already use. `None` without a keyfile or root
    /// password: nothing can be kept. A Secret written by an operator version before the
    /// application user has neither app key: the app password is generated here and
    /// [`Self::is_stored_in`] says it still has to be added (the keyfile and root password
    /// are kept as they are).
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
        let (keyfile, admin_password) = (text(KEYFILE_KEY)?, text(PASSWORD_KEY)?);
        let app_password = text(APP_PASSWORD_KEY).unwrap_or_else(|| Self::generate().app_password);
        Some(Self { keyfile, admin_password, app_password })
    }

    /// Whether `secret` holds exactly these credentials under every key of
    /// [`Self::secret_data`]: then whatever is derived from them (the application's connection
    /// string) names passwords the database knows or will know.
    pub fn is_stored_in(&self, secret: &Secret) -> bool {
        let expected = self.secret_data();
        secret.data.as_ref().is_some_and(|data| expected.iter().all(|(k, v)| data.get(k) == Some(v)))
    }

    /// The credentials Secret's data: `keyfile`, the root user (`username`, `password`) and the
    /// application user (`app-username`, `app-password`).
    pub fn secret_data(&self) -> BTreeMap<String, ByteString> {
        BTreeMap::from([
            (KEYFILE_KEY.to_owned(), ByteString(self.keyfile.clone().into_bytes())),
            (USERNAME_KEY.to_owned(), ByteString(ADMIN_USERNAME.as_bytes().to_vec())),
            (PASSWORD_KEY.to_owned(), ByteString(self.admin_password.clone().into_bytes())),
            (APP_USERNAME_KEY.to_owned(), ByteString(APP_USERNAME.as_bytes().to_vec())),
            (APP_PASSWORD_KEY.to_owned(), ByteString(self.app_password.clone().into_bytes())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_random_and_well_formed() {
        let a = DatabaseCredentials::generate();
        let b = DatabaseCredentials::generate();
        assert_ne!(a, b);
        assert_eq!(a.keyfile.len(), 756);
        assert!(a.keyfile.bytes().all(|c| BASE64_ALPHABET.contains(&c)));
        for password in [&a.admin_password, &a.app_password] {
            assert_eq!(password.len(), 32);
            assert!(password.bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a.admin_password, a.app_password);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let creds = DatabaseCredentials::generate();
        let printed = format!("{creds:?} {creds:#?}");
        assert!(!printed.contains(&creds.admin_password));
        assert!(!printed.contains(&creds.app_password));
        assert!(!printed.contains(&creds.keyfile[..16]));
        assert!(printed.contains("redacted"));
    }
}
