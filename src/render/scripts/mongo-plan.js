// Replica-set reconfiguration planning: the pure part of mongo-init.js, mirrored by
// `reconfig_steps` in src/render/mongo.rs (a unit test there runs both on the same cases and
// requires identical answers, so the Rust property tests speak for this file too).
//
// MongoDB accepts a reconfig only when it adds or removes at most one voting member, and a
// member's votes and priority must agree (priority > 0 needs a vote). planSteps walks from the
// current members to the desired ones one member at a time: each step adds, removes or
// changes exactly one member, voters stay within 1..=7, and while the voter count must shrink
// it shrinks first, while it must grow it grows first.
(function () {
  'use strict';

  const MAX_VOTERS = 7;
  const MAX_MEMBER_ID = 255;

  // The fields the operator manages; anything else in rs.conf() (buildIndexes, hidden, …) is
  // carried along by the caller.
  function normalize(m) {
    return {
      _id: m._id,
      host: m.host,
      arbiterOnly: !!m.arbiterOnly,
      priority: m.priority,
      votes: m.votes,
      tags: m.tags || {},
    };
  }

  function sameTags(a, b) {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
  }

  function voters(members) {
    return members.filter((m) => m.votes > 0).length;
  }

  // Changes still needed to turn `config` into `desired`, each touching one member.
  function pending(config, desired) {
    const changes = [];
    for (const m of config) {
      const d = desired.find((x) => x.host === m.host);
      if (!d || d.arbiterOnly !== m.arbiterOnly) {
        // An arbiter cannot become a data member or back: remove it, add it anew later.
        changes.push({ kind: 'remove', id: m._id, host: m.host, delta: m.votes > 0 ? -1 : 0 });
      } else if (d.priority !== m.priority || d.votes !== m.votes || !sameTags(d.tags, m.tags)) {
        // A member keeps its _id for life: MongoDB rejects a reconfig that changes it.
        const to = Object.assign({}, d, { _id: m._id });
        changes.push({ kind: 'update', id: m._id, host: m.host, to, delta: (d.votes > 0 ? 1 : 0) - (m.votes > 0 ? 1 : 0) });
      }
    }
    const used = new Set(config.map((m) => m._id));
    for (const d of desired) {
      if (!config.some((m) => m.host === d.host)) {
        let id = d._id;
        if (used.has(id)) {
          id = 0;
          while (used.has(id) && id < MAX_MEMBER_ID) id += 1;
        }
        changes.push({ kind: 'add', id, host: d.host, to: Object.assign({}, d, { _id: id }), delta: d.votes > 0 ? 1 : 0 });
      }
    }
    return changes;
  }

  // The change to make next: toward the desired voter count, never above MAX_VOTERS, never to
  // zero voters. Ties: shrink from the highest _id, grow from the lowest.
  function choose(config, changes, targetVoters) {
    const now = voters(config);
    let want;
    if (now > targetVoters) want = -1;
    else if (now < targetVoters) want = 1;
    else if (changes.some((c) => c.delta === 0)) want = 0;
    else want = now < MAX_VOTERS ? 1 : -1;
    const candidates = changes.filter((c) => c.delta === want);
    const pool = candidates.length > 0 ? candidates : changes;
    const byId = pool.slice().sort((a, b) => a.id - b.id);
    return want === -1 ? byId[byId.length - 1] : byId[0];
  }

  function applyChange(config, change) {
    if (change.kind === 'remove') return config.filter((m) => m.host !== change.host);
    if (change.kind === 'update') return config.map((m) => (m.host === change.host ? change.to : m));
    return config.concat([change.to]);
  }

  // Successive member lists from `current` to `desired`, one member changed per list; empty
  // when nothing changes.
  function planSteps(current, desired) {
    const want = desired.map(normalize);
    const targetVoters = voters(want);
    let config = current.map(normalize).sort((a, b) => a._id - b._id);
    const steps = [];
    // Every host changes at most twice (remove + add), so this always ends.
    const bound = 2 * (config.length + want.length) + 1;
    for (let i = 0; i < bound; i += 1) {
      const changes = pending(config, want);
      if (changes.length === 0) break;
      config = applyChange(config, choose(config, changes, targetVoters)).sort((a, b) => a._id - b._id);
      steps.push(config);
    }
    return steps;
  }

  // Exported both ways: mongosh's load() shares globalThis, node's require() uses module.exports.
  const api = { planSteps, normalize, MAX_VOTERS };
  globalThis.CoursePlan = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})();
