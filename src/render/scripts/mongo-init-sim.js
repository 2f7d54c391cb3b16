// Test harness, not shipped: runs mongo-init.js under node against a simulated replica set
// that enforces the MongoDB rules the script relies on (one voting member changed per
// reconfig, version + 1, a primary cannot remove itself, at most 7 voters, priority needs a
// vote, _id fixed per host, initiate once, users written on the primary only). It checks the script's control flow, not MongoDB:
// the real server is not available to the tests.
//
//   node mongo-init-sim.js <scenario.json>
// scenario: { desired, username, password, alive: [host], initiated: config|null,
//             primary: host|null, setName?: string, waitSeconds }
// prints { exitCode, config, primary, reconfigs, stepDowns, initiates, users, log }
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'mongo-init-sim-'));
const configPath = path.join(dir, 'replica-set.json');
fs.writeFileSync(configPath, JSON.stringify(scenario.desired));

const state = {
  config: scenario.initiated ? JSON.parse(JSON.stringify(scenario.initiated)) : null,
  setName: scenario.setName || (scenario.initiated && scenario.initiated._id),
  primary: scenario.primary || null,
  alive: new Set(scenario.alive),
  reconfigs: 0,
  stepDowns: 0,
  initiates: 0,
  users: scenario.users || {},
};
const log = [];
let clock = 0;

class ServerError extends Error {}
class Quit extends Error {
  constructor(code) {
    super(`quit(${code})`);
    this.code = code;
  }
}

function validate(config) {
  const members = config.members;
  const voters = members.filter((m) => m.votes > 0);
  if (voters.length > 7) throw new ServerError('more than 7 voting members');
  if (voters.length < 1) throw new ServerError('no voting member');
  for (const m of members) {
    if (m.priority > 0 && m.votes !== 1) throw new ServerError(`${m.host}: priority without a vote`);
    if (m.arbiterOnly && m.priority !== 0) throw new ServerError(`${m.host}: arbiter with priority`);
    if (m.newlyAdded !== undefined) throw new ServerError('newlyAdded is not allowed');
  }
  if (new Set(members.map((m) => m.host)).size !== members.length) throw new ServerError('duplicate host');
  if (new Set(members.map((m) => m._id)).size !== members.length) throw new ServerError('duplicate _id');
}

function electFrom(config, except) {
  const candidate = config.members
    .filter((m) => m.host !== except && m.priority > 0 && state.alive.has(m.host))
    .sort((a, b) => a._id - b._id)[0];
  return candidate ? candidate.host : null;
}

function execute(host, authenticated, command) {
  if (!state.alive.has(host)) throw new ServerError(`${host} does not answer`);
  const name = Object.keys(command)[0];
  const inSet = state.config && state.config.members.some((m) => m.host === host);
  if (name === 'hello') {
    if (state.config && inSet) return { ok: 1, me: host, setName: state.setName, primary: state.primary || undefined };
    return { ok: 1, me: host, isreplicaset: true };
  }
  if (!authenticated) throw new ServerError(`${name} requires authentication`);
  if (name === 'replSetInitiate') {
    if (state.config) throw new ServerError('AlreadyInitialized');
    const config = command.replSetInitiate;
    if (!config.members.some((m) => m.host === host)) throw new ServerError('initiating member not in config');
    validate(config);
    state.initiates += 1;
    state.config = Object.assign({}, JSON.parse(JSON.stringify(config)), { version: 1, term: 1 });
    state.setName = config._id;
    state.primary = electFrom(state.config, null);
    return { ok: 1 };
  }
  if (!state.config) throw new ServerError('NotYetInitialized');
  if (name === 'replSetGetConfig') return { ok: 1, config: JSON.parse(JSON.stringify(state.config)) };
  if (name === 'replSetGetStatus') {
    const stateStr = (m) => (m.host === state.primary ? 'PRIMARY' : m.arbiterOnly ? 'ARBITER' : 'SECONDARY');
    return { ok: 1, members: state.config.members.map((m) => ({ name: m.host, stateStr: stateStr(m) })) };
  }
  if (host !== state.primary) throw new ServerError('NotWritablePrimary');
  if (name === 'replSetStepDown') {
    state.stepDowns += 1;
    state.primary = electFrom(state.config, host);
    throw new ServerError('connection closed by step down');
  }
  if (name === 'usersInfo') {
    const wanted = command.usersInfo;
    const user = state.users[`${wanted.db}.${wanted.user}`];
    return { ok: 1, users: user ? [{ user: user.user, db: user.db, roles: user.roles }] : [] };
  }
  if (name === 'createUser' || name === 'updateUser') {
    const key = `admin.${command[name]}`;
    if (name === 'createUser' && state.users[key]) throw new ServerError('user already exists');
    if (name === 'updateUser' && !state.users[key]) throw new ServerError('user not found');
    state.users[key] = { user: command[name], db: 'admin', roles: command.roles, pwd: command.pwd };
    return { ok: 1 };
  }
  if (name === 'replSetReconfig') {
    const next = command.replSetReconfig;
    if (next.version !== state.config.version + 1) throw new ServerError('version must grow by one');
    validate(next);
    if (!next.members.some((m) => m.host === state.primary)) throw new ServerError('primary cannot remove itself');
    for (const m of next.members) {
      const old = state.config.members.find((o) => o.host === m.host);
      if (old && old._id !== m._id) throw new ServerError(`${m.host}: _id changed`);
    }
    const hostsOf = (c) => new Set(c.members.map((m) => m.host));
    const all = new Set([...hostsOf(state.config), ...hostsOf(next)]);
    const votes = (c, h) => {
      const m = c.members.find((x) => x.host === h);
      return m && m.votes > 0 ? 1 : 0;
    };
    const changedVoters = [...all].filter((h) => votes(state.config, h) !== votes(next, h)).length;
    if (changedVoters > 1) throw new ServerError(`${changedVoters} voting members changed in one reconfig`);
    state.reconfigs += 1;
    state.config = Object.assign({}, JSON.parse(JSON.stringify(next)), { term: state.config.term });
    return { ok: 1 };
  }
  throw new ServerError(`unknown command ${name}`);
}

class Mongo {
  constructor(uri) {
    const match = /^mongodb:\/\/(?:([^:@]+):([^@]+)@)?([^/]+)\//.exec(uri);
    this.host = match[3];
    const user = match[1] && decodeURIComponent(match[1]);
    const pass = match[2] && decodeURIComponent(match[2]);
    if (user !== undefined && (user !== scenario.username || pass !== scenario.password)) {
      throw new ServerError('Authentication failed');
    }
    this.authenticated = user !== undefined;
  }
  getDB() {
    return { runCommand: (command) => execute(this.host, this.authenticated, command) };
  }
  close() {}
}

class FakeDate extends Date {
  constructor(...args) {
    super(...(args.length ? args : [clock]));
  }
  static now() {
    return clock;
  }
}

const sandbox = {
  Mongo,
  Date: FakeDate,
  print: (line) => log.push(String(line)),
  quit: (code) => {
    throw new Quit(code || 0);
  },
  sleep: (ms) => {
    clock += ms;
  },
  load: (file) => vm.runInContext(fs.readFileSync(file, 'utf8'), context, { filename: file }),
  require,
  process: {
    env: {
      PLAN_SCRIPT: path.join(__dirname, 'mongo-plan.js'),
      REPLICA_SET_CONFIG: configPath,
      ADMIN_USERNAME: scenario.username,
      ADMIN_PASSWORD: scenario.password,
      APP_USERNAME: scenario.appUsername,
      APP_PASSWORD: scenario.appPassword,
      APP_DATABASE: scenario.appDatabase,
      WAIT_SECONDS: String(scenario.waitSeconds || 30),
    },
  },
  encodeURIComponent,
  JSON,
  Object,
  Number,
  Error,
};
sandbox.globalThis = sandbox;
const context = vm.createContext(sandbox);

let exitCode = 0;
try {
  const file = path.join(__dirname, 'mongo-init.js');
  vm.runInContext(fs.readFileSync(file, 'utf8'), context, { filename: file });
} catch (e) {
  if (e instanceof Quit || (e && e.constructor && e.constructor.name === 'Quit')) exitCode = e.code;
  else {
    log.push(`uncaught: ${e && e.stack}`);
    exitCode = 2;
  }
}
fs.rmSync(dir, { recursive: true, force: true });
process.stdout.write(
  JSON.stringify({
    exitCode,
    config: state.config,
    primary: state.primary,
    reconfigs: state.reconfigs,
    stepDowns: state.stepDowns,
    initiates: state.initiates,
    users: state.users,
    log,
  }),
);
