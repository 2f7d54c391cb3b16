//! Data tier: the init Job's rendered script (`mongo-init.js` with `mongo-plan.js` and the
//! rendered `replica-set.json`) run in the real `mongosh`, with the Job's own command and
//! environment (Secret references resolved from the rendered credentials Secret), against a
//! recording wire-protocol fake of a replica set (`tests/data_mongo/fake_replica_set.py`, built
//! on MockupDB; SCRAM-SHA-256 as the root user is checked). No mongod or mongodump is
//! obtainable from any registry here, so elections, initial sync and dumps are not exercised:
//! these tests pin what the script sends, document for document.
//!
//! Needs mongosh and MockupDB at the versions in hack/versions.env: `hack/install-mongosh.sh`
//! (part of `make deps`). The tests fail (they do not skip) when either is missing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use course_operator::api::{CourseService, DatabaseSpec};
use course_operator::database::credentials::{ADMIN_USERNAME, APP_DATABASE, APP_USERNAME};
use course_operator::database::{ARBITER_MEMBER_ID, DatabaseCredentials, Member, desired_members, reconfig_steps};
use course_operator::render::Context;
use course_operator::render::mongo;
use course_operator::{manifest, names};
use serde_json::{Value, json};

/// Commands that change the replica set or its users: compared in full, in order.
const WRITES: &[&str] =
    &["replSetInitiate", "replSetReconfig", "replSetStepDown", "usersInfo", "createUser", "updateUser", "dropUser"];

fn versions() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/versions.env");
    let text = fs::read_to_string(&path).expect("read hack/versions.env");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.trim_start().starts_with('#'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn cache_dir() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/course-operator")
}

/// mongosh and the fake's Python, where hack/install-mongosh.sh puts them (or `MONGOSH` and
/// `MOCKUPDB_PYTHON`); a missing one fails the test with what to run.
fn tools() -> (PathBuf, PathBuf) {
    let v = versions();
    let version = |key: &str| v.get(key).cloned().unwrap_or_else(|| panic!("{key} missing in hack/versions.env"));
    let mongosh = std::env::var_os("MONGOSH").map(PathBuf::from).unwrap_or_else(|| {
        cache_dir().join(format!("mongosh-{}/node_modules/.bin/mongosh", version("MONGOSH_VERSION")))
    });
    let python = std::env::var_os("MOCKUPDB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("mockupdb-{}/bin/python", version("MOCKUPDB_VERSION"))));
    let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    assert!(
        works(Command::new(&mongosh).arg("--version")),
        "mongosh not found at {}: run hack/install-mongosh.sh (make deps); the init script must run in the real mongosh",
        mongosh.display()
    );
    assert!(
        works(Command::new(&python).args(["-c", "import mockupdb"])),
        "MockupDB not found for {}: run hack/install-mongosh.sh (make deps)",
        python.display()
    );
    (mongosh, python)
}

fn full_stack() -> CourseService {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
    manifest::parse(&fs::read_to_string(path).expect("read sample")).expect("sample parses")
}

fn database(cs: &CourseService, members: i32, arbiter: bool) -> DatabaseSpec {
    let mut db = cs.spec.database.clone().expect("full-stack has a database");
    db.members = members;
    db.arbiter = arbiter;
    db
}

/// The fake set: one MockupDB server per member, sharing state and a command log.
struct FakeSet {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    hosts: Vec<String>,
}

impl FakeSet {
    fn start(python: &Path, servers: usize, creds: &DatabaseCredentials) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data_mongo/fake_replica_set.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(servers.to_string())
            .env("ROOT_USERNAME", ADMIN_USERNAME)
            .env("ROOT_PASSWORD", &creds.admin_password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake replica set");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the fake's hosts");
        let hello: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("fake did not start ({e}): {line:?}"));
        let hosts = serde_json::from_value(hello["hosts"].clone()).expect("hosts");
        Self { child, stdin, stdout, hosts }
    }

    /// Commands recorded since the last dump, and the state now.
    fn dump(&mut self) -> Value {
        writeln!(self.stdin, "dump").expect("ask the fake for its log");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the fake's log");
        serde_json::from_str(&line).expect("the fake's log parses")
    }
}

impl Drop for FakeSet {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's world: the rendered CourseService, its credentials, the fake, and how the
/// StatefulSet DNS names of the rendered config map onto the fake's `localhost:port`s.
struct World {
    cs: CourseService,
    creds: DatabaseCredentials,
    fake: FakeSet,
    mongosh: PathBuf,
    hosts: BTreeMap<String, String>,
    dir: PathBuf,
}

impl World {
    /// `data` data members' servers, plus one for the arbiter.
    fn new(test: &str, data: usize) -> Self {
        let (mongosh, python) = tools();
        let cs = full_stack();
        let creds = DatabaseCredentials::generate();
        let fake = FakeSet::start(&python, data + 1, &creds);
        let ctx = Context::new(&cs);
        let members = i32::try_from(data).expect("few members");
        let rendered: Vec<String> =
            desired_members(mongo::replica_set(&ctx), &database(&cs, members, false), &BTreeMap::new())
                .into_iter()
                .map(|m| m.host)
                .collect();
        let arbiter = desired_members(mongo::replica_set(&ctx), &database(&cs, 2, true), &BTreeMap::new())
            .into_iter()
            .find(|m| m.arbiter_only)
            .expect("two members get an arbiter")
            .host;
        let hosts = rendered.into_iter().chain([arbiter]).zip(fake.hosts.iter().cloned()).collect();
        let unique = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("course-operator-{test}-{}-{unique}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        Self { cs, creds, fake, mongosh, hosts, dir }
    }

    fn local(&self, host: &str) -> String {
        self.hosts.get(host).cloned().unwrap_or_else(|| panic!("no fake server for {host}"))
    }

    /// Members as the rendered config has them, on the fake's addresses.
    fn desired(&self, members: i32, arbiter: bool) -> Vec<Member> {
        let ctx = Context::new(&self.cs);
        let mut desired =
            desired_members(mongo::replica_set(&ctx), &database(&self.cs, members, arbiter), &BTreeMap::new());
        for m in &mut desired {
            m.host = self.local(&m.host);
        }
        desired
    }

    /// Runs the init Job's container, as rendered, in mongosh: its command, its environment
    /// with every Secret reference read from the rendered credentials Secret, its ConfigMap's
    /// files (the hosts of replica-set.json mapped onto the fake). Returns mongosh's output.
    fn run_init_job(&self, members: i32, arbiter: bool) -> String {
        let ctx = Context::new(&self.cs);
        let db = database(&self.cs, members, arbiter);
        let mount = self.dir.join(format!("init-{members}-{arbiter}"));
        fs::create_dir_all(&mount).expect("mount dir");
        for (file, mut text) in mongo::init_files(&ctx, &db) {
            if file.ends_with(".json") {
                for (rendered, local) in &self.hosts {
                    text = text.replace(&format!("\"{rendered}\""), &format!("\"{local}\""));
                }
            }
            fs::write(mount.join(file), text).expect("write init file");
        }
        let secret = mongo::credentials_secret(&ctx, &self.creds);
        let secret_data = secret.data.expect("credentials data");
        let job = mongo::init_job(&ctx, &db);
        let pod = job.spec.and_then(|s| s.template.spec).expect("init pod");
        let container = &pod.containers[0];
        let mount_path = container.volume_mounts.iter().flatten().find(|m| m.name == "init").expect("init mount");
        let rewrite = |s: &str| s.replace(&mount_path.mount_path, &mount.to_string_lossy());
        let command = container.command.clone().expect("command");
        assert_eq!(command[0], "mongosh", "the Job runs mongosh");
        let mut run = Command::new(&self.mongosh);
        run.args(command[1..].iter().map(|a| rewrite(a))).env_clear();
        run.env("PATH", std::env::var("PATH").unwrap_or_default());
        for env in container.env.iter().flatten() {
            let value = match (&env.value, env.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref())) {
                (Some(value), _) => rewrite(value),
                (None, Some(r)) => {
                    assert_eq!(
                        r.name,
                        names::database_credentials_secret(ctx.name),
                        "{} from another Secret",
                        env.name
                    );
                    let bytes = secret_data.get(&r.key).unwrap_or_else(|| panic!("no key {} for {}", r.key, env.name));
                    String::from_utf8(bytes.0.clone()).expect("UTF-8")
                }
                (None, None) => panic!("{} has no value", env.name),
            };
            run.env(&env.name, value);
        }
        // HOME=/tmp as in the pod; a short wait: the fake answers at once or never.
        run.env("HOME", &self.dir).env("WAIT_SECONDS", "20");
        let out = run.output().expect("run mongosh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "mongo-init.js failed for {members} member(s){}:\n{stdout}\n{}",
            if arbiter { " + arbiter" } else { "" },
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The writes (and user look-ups) the last run sent, with the member that got them;
    /// asserts nothing was rejected and every authentication was as root.
    fn writes(&mut self) -> (Vec<(String, Value)>, Value) {
        let dump = self.fake.dump();
        let commands = dump["commands"].as_array().cloned().unwrap_or_default();
        for c in &commands {
            assert!(c.get("rejected").is_none(), "the fake rejected a command: {c:#}");
            if c["command"] == "saslStart" {
                assert_eq!(c["doc"]["user"], ADMIN_USERNAME, "the Job authenticates as root");
            }
        }
        let writes = commands
            .iter()
            .filter(|c| WRITES.iter().any(|w| c["command"] == *w))
            .map(|c| (c["host"].as_str().unwrap_or_default().to_owned(), c["doc"].clone()))
            .collect();
        (writes, dump)
    }

    fn user_commands(&self, primary: &str, exists: bool) -> Vec<(String, Value)> {
        let roles = json!([{ "role": "readWrite", "db": APP_DATABASE }]);
        let verb = if exists { "updateUser" } else { "createUser" };
        vec![
            (primary.to_owned(), json!({ "usersInfo": { "user": APP_USERNAME, "db": "admin" } })),
            (
                primary.to_owned(),
                json!({
                    verb: APP_USERNAME,
                    "pwd": self.creds.app_password,
                    "roles": roles,
                    "writeConcern": { "w": "majority", "wtimeout": 60000 },
                }),
            ),
        ]
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `replSetInitiate` document: the rendered config, as rendered.
fn initiate(set: &str, members: &[Member]) -> Value {
    json!({ "replSetInitiate": { "_id": set, "members": members } })
}

/// A member as the script sends it in a reconfig: every managed field spelled out.
fn reconfig_member(m: &Member) -> Value {
    json!({
        "_id": m.id, "host": m.host, "arbiterOnly": m.arbiter_only,
        "priority": m.priority, "votes": m.votes, "tags": m.tags,
    })
}

/// The `replSetReconfig` documents walking `from` to `to`, versions from `version` + 1.
fn reconfigs(set: &str, primary: &str, from: &[Member], to: &[Member], version: u64) -> Vec<(String, Value)> {
    reconfig_steps(from, to)
        .iter()
        .zip(version + 1..)
        .map(|(step, v)| {
            let members: Vec<Value> = step.iter().map(reconfig_member).collect();
            let doc =
                json!({ "replSetReconfig": { "_id": set, "members": members, "version": v }, "maxTimeMS": 120000 });
            (primary.to_owned(), doc)
        })
        .collect()
}

fn version_of(dump: &Value) -> u64 {
    dump["config"]["version"].as_u64().expect("a config version")
}

#[test]
fn init_script_in_real_mongosh_initiates_scales_1_3_5_3_and_creates_only_the_app_user() {
    let mut w = World::new("data-mongo-scale", 5);
    let set = names::database_replica_set(w.cs.metadata.name.as_deref().expect("name"));
    let primary = w.desired(1, false)[0].host.clone();

    // 1 member: a new set, initiated on member 0 with the rendered config, then the app user.
    let out = w.run_init_job(1, false);
    let (writes, dump) = w.writes();
    let mut expected = vec![(primary.clone(), initiate(&set, &w.desired(1, false)))];
    expected.extend(w.user_commands(&primary, false));
    assert_eq!(writes, expected, "1 member\n{out}");
    assert_eq!(dump["users"].as_array().map(Vec::len), Some(1), "{dump:#}");
    assert_eq!(dump["users"][0]["user"], APP_USERNAME, "root is the entrypoint's, never the script's");
    assert_eq!(dump["users"][0]["db"], "admin");
    assert_eq!(dump["users"][0]["roles"], json!([{ "role": "readWrite", "db": "microcourses" }]));

    // 1 → 3 → 5 → 3: one member per reconfig, each version + 1; the user updated, not duplicated.
    let mut previous = (1, dump);
    for members in [3, 5, 3] {
        let from = w.desired(previous.0, false);
        let out = w.run_init_job(members, false);
        let (writes, dump) = w.writes();
        let mut expected = reconfigs(&set, &primary, &from, &w.desired(members, false), version_of(&previous.1));
        assert!(!expected.is_empty(), "{} -> {members} changes something", previous.0);
        expected.extend(w.user_commands(&primary, true));
        assert_eq!(writes, expected, "{} -> {members}\n{out}", previous.0);
        assert_eq!(dump["config"]["members"].as_array().map(Vec::len), Some(usize::try_from(members).unwrap_or(0)));
        previous = (members, dump);
    }

    // The same config again: no reconfig, only the user brought to its password and role.
    let out = w.run_init_job(3, false);
    let (writes, dump) = w.writes();
    assert_eq!(writes, w.user_commands(&primary, true), "rerun\n{out}");
    assert_eq!(version_of(&dump), version_of(&previous.1), "a rerun changes no config");
}

#[test]
fn init_script_in_real_mongosh_initiates_with_an_arbiter_and_removes_it_for_an_odd_count() {
    let mut w = World::new("data-mongo-arbiter", 3);
    let set = names::database_replica_set(w.cs.metadata.name.as_deref().expect("name"));
    let primary = w.desired(1, false)[0].host.clone();

    // Two data members and the arbiter, initiated together: the arbiter has _id 100, no priority.
    let with_arbiter = w.desired(2, true);
    assert!(with_arbiter.iter().any(|m| m.arbiter_only && m.id == ARBITER_MEMBER_ID));
    let out = w.run_init_job(2, true);
    let (writes, dump) = w.writes();
    let mut expected = vec![(primary.clone(), initiate(&set, &with_arbiter))];
    expected.extend(w.user_commands(&primary, false));
    assert_eq!(writes, expected, "2 + arbiter\n{out}");

    // Three data members: the arbiter leaves and member 2 joins, one voter per reconfig.
    let out = w.run_init_job(3, true);
    let (writes, _) = w.writes();
    let mut expected = reconfigs(&set, &primary, &with_arbiter, &w.desired(3, true), version_of(&dump));
    assert_eq!(expected.len(), 2, "remove the arbiter, add a member");
    expected.extend(w.user_commands(&primary, true));
    assert_eq!(writes, expected, "2 + arbiter -> 3\n{out}");
}
