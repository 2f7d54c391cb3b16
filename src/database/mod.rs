//! The application's MongoDB replica set apart from the Kubernetes objects that run it: which
//! members it should have and how to walk there one reconfig at a time ([`membership`]), and
//! the credentials its members and users share ([`credentials`]). `render::mongo` turns both
//! into Secrets, StatefulSets and the init Job.
//!
//! Pure, except credential generation ([`DatabaseCredentials::generate`], and
//! [`DatabaseCredentials::from_secret`] for a Secret without an application password), which
//! draws from the operating system's randomness.

pub mod credentials;
pub mod membership;

pub use credentials::DatabaseCredentials;
pub use membership::{
    ARBITER_MEMBER_ID, MAX_VOTING_MEMBERS, Member, desired_members, reconfig_steps, replica_set_config, uses_arbiter,
};

use crate::names;

/// Port of every member.
pub const MONGO_PORT: i32 = 27017;

/// Where the MongoDB replica set of one CourseService lives (not a Kubernetes ReplicaSet): its
/// members are pods of StatefulSets named after the CourseService, behind the database's
/// headless Service in its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MongoReplicaSet<'a> {
    /// `metadata.name` of the CourseService.
    pub name: &'a str,
    /// Namespace of the CourseService.
    pub namespace: &'a str,
}

impl MongoReplicaSet<'_> {
    /// `host:27017` of data member `ordinal`.
    pub fn member_host(&self, ordinal: i32) -> String {
        let host = names::stateful_pod_host(
            &names::database(self.name),
            ordinal,
            &names::database_headless(self.name),
            self.namespace,
        );
        format!("{host}:{MONGO_PORT}")
    }

    /// `host:27017` of the arbiter.
    pub fn arbiter_host(&self) -> String {
        let host = names::stateful_pod_host(
            &names::database_arbiter(self.name),
            0,
            &names::database_headless(self.name),
            self.namespace,
        );
        format!("{host}:{MONGO_PORT}")
    }

    /// `host:27017` of each of `members` data members, comma-separated: the seed list.
    pub fn seed_list(&self, members: i32) -> String {
        (0..members).map(|i| self.member_host(i)).collect::<Vec<_>>().join(",")
    }
}
