#!/usr/bin/env bash
# Install what tests/data_mongo.rs needs: the real mongosh (npm) and MockupDB (PyPI), the
# wire-protocol library its fake replica set is built on. No mongod or mongodump is obtainable
# from any registry here; the init script runs in mongosh against that recording fake.
# Versions come from hack/versions.env; each lives in its own cache directory keyed by version
# (~/.cache/course-operator/mongosh-<v>/, ~/.cache/course-operator/mockupdb-<v>/, a venv), so
# bumping a version installs next to the old one. Idempotent: nothing runs when both work.
# Needs node + npm (>= 16.15, mongosh's engines field) and python3 with the venv module.
set -euo pipefail

log() { printf '[install-mongosh] %s\n' "$*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$root/hack/versions.env"
cache=${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}

mongosh_dir=$cache/mongosh-$MONGOSH_VERSION
mongosh=$mongosh_dir/node_modules/.bin/mongosh
if [[ -x $mongosh ]] && "$mongosh" --version >/dev/null 2>&1; then
  log "mongosh present: $mongosh ($("$mongosh" --version))"
else
  command -v npm >/dev/null || { log "ERROR: npm not found (node + npm are needed for mongosh)"; exit 1; }
  log "installing mongosh@$MONGOSH_VERSION into $mongosh_dir"
  mkdir -p "$mongosh_dir"
  # Optional native add-ons (Kerberos, client-side encryption, …) are not used by the tests.
  npm install --prefix "$mongosh_dir" --no-audit --no-fund --omit=optional --no-save \
    "mongosh@$MONGOSH_VERSION" >&2
  "$mongosh" --version >/dev/null
  log "installed: $mongosh"
fi

venv=$cache/mockupdb-$MOCKUPDB_VERSION
python=$venv/bin/python
if [[ -x $python ]] && "$python" -c "import mockupdb, pymongo; assert pymongo.version == '$PYMONGO_VERSION'" 2>/dev/null; then
  log "MockupDB present: $venv"
else
  command -v python3 >/dev/null || { log "ERROR: python3 not found (MockupDB needs it)"; exit 1; }
  log "installing mockupdb==$MOCKUPDB_VERSION pymongo==$PYMONGO_VERSION into the venv $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "mockupdb==$MOCKUPDB_VERSION" "pymongo==$PYMONGO_VERSION"
  "$python" -c "import mockupdb"
  log "installed: $venv"
fi
