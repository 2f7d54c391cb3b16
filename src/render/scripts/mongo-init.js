// Initiates the MongoDB replica set, then keeps its members equal to the rendered config,
// one member per reconfig as MongoDB requires, and makes sure the application's user exists
// with its password and only its role. Run by the `<name>-db-init-<hash>` Job with
//   mongosh --nodb --norc --quiet mongo-init.js
// Idempotent: a run against a set that already matches changes nothing.
//
// Environment:
//   REPLICA_SET_CONFIG  the desired config (JSON: _id and members), rendered by the operator
//   PLAN_SCRIPT         mongo-plan.js, the pure step planner (defines globalThis.CoursePlan)
//   ADMIN_USERNAME, ADMIN_PASSWORD   the root user the image's entrypoint created on every
//                       member at its first start (MONGO_INITDB_ROOT_*): a Job cannot use the
//                       localhost exception, so the user must exist before the set does
//   APP_USERNAME, APP_PASSWORD, APP_DATABASE   the application's user, created (or updated)
//                       in `admin` with readWrite on APP_DATABASE and nothing else
//   WAIT_SECONDS        how long to wait without progress (members answering, a primary, a
//                       new member finishing its initial sync) before failing the Job
//
// Everything lives inside courseInit() so no name collides with mongosh's globals.
function courseInit() {
  'use strict';

  const fs = require('fs');
  load(process.env.PLAN_SCRIPT);
  const plan = globalThis.CoursePlan;
  const desired = JSON.parse(fs.readFileSync(process.env.REPLICA_SET_CONFIG, 'utf8'));
  const username = process.env.ADMIN_USERNAME;
  const password = process.env.ADMIN_PASSWORD;
  const app = {
    user: process.env.APP_USERNAME,
    password: process.env.APP_PASSWORD,
    database: process.env.APP_DATABASE,
  };
  const waitMillis = Number(process.env.WAIT_SECONDS || '900') * 1000;
  if (!username || !password || !app.user || !app.password || !app.database) {
    fail('ADMIN_USERNAME, ADMIN_PASSWORD, APP_USERNAME, APP_PASSWORD and APP_DATABASE are required');
  }
  const hosts = desired.members.map((m) => m.host);

  function logLine(message) {
    print(`${new Date().toISOString()} mongo-init: ${message}`);
  }

  function fail(message) {
    logLine(`FAILED: ${message}`);
    quit(1);
  }

  function uriOf(host, authenticated) {
    const credentials = authenticated ? `${encodeURIComponent(username)}:${encodeURIComponent(password)}@` : '';
    const auth = authenticated ? '&authSource=admin' : '';
    return `mongodb://${credentials}${host}/?directConnection=true&serverSelectionTimeoutMS=5000&connectTimeoutMS=5000${auth}`;
  }

  function connectTo(host, authenticated) {
    try {
      return new Mongo(uriOf(host, authenticated));
    } catch (e) {
      return null;
    }
  }

  function closeQuietly(conn) {
    try {
      if (conn) conn.close();
    } catch (e) {
      // Already closed (a stepped-down primary drops its connections).
    }
  }

  // mongosh throws on most command errors but returns { ok: 0 } on some: treat both alike.
  function adminCommand(conn, command) {
    const reply = conn.getDB('admin').runCommand(command);
    if (!reply || reply.ok !== 1) {
      throw new Error(`${Object.keys(command)[0]}: ${reply && (reply.errmsg || reply.codeName)}`);
    }
    return reply;
  }

  // `hello` needs no authentication; null when the member does not answer.
  function helloOf(host) {
    const conn = connectTo(host, false);
    if (!conn) return null;
    try {
      // Assigned before returning: mongosh awaits a call only as a statement of its own, and a
      // `return` of the pending call would let `finally` close the connection under it.
      const reply = adminCommand(conn, { hello: 1 });
      return reply;
    } catch (e) {
      return null;
    } finally {
      closeQuietly(conn);
    }
  }

  function waitFor(what, check) {
    const deadline = Date.now() + waitMillis;
    for (;;) {
      let value = null;
      try {
        value = check();
      } catch (e) {
        logLine(`still waiting for ${what}: ${e.message}`);
      }
      if (value) return value;
      if (Date.now() > deadline) fail(`no ${what} within ${waitMillis / 1000}s`);
      sleep(2000);
    }
  }

  function primaryHost() {
    for (const host of hosts) {
      const reply = helloOf(host);
      if (reply && reply.setName === desired._id && reply.primary) return reply.primary;
    }
    return null;
  }

  function describe(before, after) {
    const removed = before.filter((m) => !after.some((a) => a.host === m.host)).map((m) => `remove ${m.host}`);
    const added = after
      .filter((m) => !before.some((b) => b.host === m.host))
      .map((m) => `add ${m.host} (votes ${m.votes})`);
    const changed = after
      .filter((m) => before.some((b) => b.host === m.host && (b.votes !== m.votes || b.priority !== m.priority)))
      .map((m) => `set ${m.host} votes ${m.votes} priority ${m.priority}`);
    return removed.concat(added, changed).join(', ') || 'tags';
  }

  // The application's user: readWrite on its database only, defined in `admin` (the
  // connection string says authSource=admin). Created when missing, otherwise given the
  // current password and exactly these roles, so a rerun converges whatever was changed by
  // hand. On the primary, acknowledged by a majority so a failover cannot lose it.
  function ensureAppUser(primary) {
    const conn = connectTo(primary, true);
    if (!conn) fail(`cannot connect to the primary ${primary}`);
    const roles = [{ role: 'readWrite', db: app.database }];
    const writeConcern = { w: 'majority', wtimeout: 60000 };
    const found = adminCommand(conn, { usersInfo: { user: app.user, db: 'admin' } }).users;
    if (found.length === 0) {
      adminCommand(conn, { createUser: app.user, pwd: app.password, roles, writeConcern });
      logLine(`created user ${app.user} (readWrite on ${app.database})`);
    } else {
      adminCommand(conn, { updateUser: app.user, pwd: app.password, roles, writeConcern });
      logLine(`updated user ${app.user} (password, readWrite on ${app.database})`);
    }
    closeQuietly(conn);
    return 0;
  }

  // 1. Every desired member answers (rs.initiate and a reconfig adding a member both need it).
  const hellos = waitFor('answer from every member', () => {
    const replies = hosts.map(helloOf);
    return replies.every(Boolean) ? replies : null;
  });
  const foreign = hellos.find((h) => h.setName && h.setName !== desired._id);
  if (foreign) fail(`${foreign.me} belongs to replica set ${foreign.setName}, not ${desired._id}`);

  // 2. A new set: initiate it on member 0 with the whole config (initiation is not bound by
  //    the one-member-per-reconfig rule). Only when NO member knows a set, so a member that
  //    lost its volume never starts a second set beside the running one.
  if (!hellos.some((h) => h.setName === desired._id)) {
    logLine(`initiating ${desired._id} with ${hosts.length} member(s) on ${hosts[0]}`);
    const conn = connectTo(hosts[0], true);
    if (!conn) fail(`cannot connect to ${hosts[0]}`);
    adminCommand(conn, { replSetInitiate: desired });
    closeQuietly(conn);
    const primary = waitFor('primary after initiation', primaryHost);
    logLine(`initiated; primary ${primary}`);
    return ensureAppUser(primary);
  }

  // 3. An existing set: walk to the desired members one reconfig at a time. Without a
  //    successful step for WAIT_SECONDS (a config MongoDB keeps refusing, a primary that
  //    cannot be moved) the Job fails, visibly, instead of looping forever.
  let progressDeadline = Date.now() + waitMillis;
  for (;;) {
    if (Date.now() > progressDeadline) fail(`no reconfig step succeeded within ${waitMillis / 1000}s`);
    const primary = waitFor('primary', primaryHost);
    const conn = connectTo(primary, true);
    if (!conn) {
      sleep(2000);
      continue;
    }
    const current = adminCommand(conn, { replSetGetConfig: 1 }).config;
    const steps = plan.planSteps(current.members, desired.members);
    if (steps.length === 0) {
      logLine(`members match the desired config (version ${current.version})`);
      closeQuietly(conn);
      return ensureAppUser(primary);
    }
    const next = steps[0];
    if (!next.some((m) => m.host === primary)) {
      // A primary cannot remove itself: hand over first, then plan again against the new one.
      logLine(`the next step removes the primary ${primary}: stepping it down`);
      try {
        adminCommand(conn, { replSetStepDown: 60 });
      } catch (e) {
        // The primary closes our connection as it steps down.
      }
      closeQuietly(conn);
      sleep(2000);
      continue;
    }
    // Keep the fields the operator does not manage (buildIndexes, hidden, …) as they are.
    const members = next.map((m) => Object.assign({}, current.members.find((c) => c.host === m.host) || {}, m));
    const config = Object.assign({}, current, { members, version: current.version + 1 });
    delete config.term; // set by the server
    try {
      // Returns once a majority of voting members installed the new config (MongoDB 4.4+).
      adminCommand(conn, { replSetReconfig: config, maxTimeMS: 120000 });
    } catch (e) {
      // e.g. CurrentConfigNotCommittedYet, NotWritablePrimary: plan again from what is there.
      logLine(`reconfig to version ${config.version} not accepted (${e.message}); retrying`);
      closeQuietly(conn);
      sleep(2000);
      continue;
    }
    logLine(`version ${config.version}: ${describe(current.members, members)}`);

    // A new member counts toward majorities once it is a secondary: wait for its initial sync
    // before the next step, so the set never depends on several members still syncing.
    const added = members.filter((m) => !current.members.some((c) => c.host === m.host)).map((m) => m.host);
    if (added.length > 0) {
      waitFor(`initial sync of ${added.join(', ')}`, () => {
        const status = adminCommand(conn, { replSetGetStatus: 1 });
        return added.every((host) =>
          status.members.some((s) => s.name === host && ['PRIMARY', 'SECONDARY', 'ARBITER'].includes(s.stateStr)),
        );
      });
    }
    closeQuietly(conn);
    progressDeadline = Date.now() + waitMillis;
  }
}

quit(courseInit());
