#!/bin/sh
# One scheduled backup: mongodump of the whole replica set (with the oplog, so the archive is
# a consistent point in time) into /backup, then keep only the newest $KEEP archives.
# Environment: MONGODB_HOSTS (host:port,...), REPLICA_SET, MONGODB_USERNAME and
# MONGODB_PASSWORD (root, from the credentials Secret: the application's user may not read the
# oplog), KEEP, BACKUP_DIR.
set -eu
: "${MONGODB_HOSTS:?MONGODB_HOSTS is required}"
: "${REPLICA_SET:?REPLICA_SET is required}"
: "${MONGODB_USERNAME:?MONGODB_USERNAME is required}"
: "${MONGODB_PASSWORD:?MONGODB_PASSWORD is required}"
: "${KEEP:?KEEP is required}"
BACKUP_DIR=${BACKUP_DIR:-/backup}
# The generated password is alphanumeric: no escaping needed in the URI.
uri="mongodb://$MONGODB_USERNAME:$MONGODB_PASSWORD@$MONGODB_HOSTS/?replicaSet=$REPLICA_SET&authSource=admin"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive="$BACKUP_DIR/$stamp.archive.gz"
# Written under a temporary name: a failed or interrupted dump never counts as a backup, so
# it can never push a good one out of the newest $KEEP.
mongodump --uri "$uri" --oplog --gzip --archive="$archive.partial"
mv "$archive.partial" "$archive"
echo "backup written: $archive ($(du -h "$archive" | cut -f1))"

# UTC timestamps sort by name and globs expand sorted, so the oldest archives come first.
# Leftover partial files of failed runs are removed too.
set -- "$BACKUP_DIR"/*.archive.gz
excess=$(($# - KEEP))
for old in "$@"; do
  [ "$excess" -gt 0 ] || break
  [ -e "$old" ] || continue
  rm -f "$old"
  echo "old backup removed: $(basename "$old")"
  excess=$((excess - 1))
done
find "$BACKUP_DIR" -maxdepth 1 -name '*.archive.gz.partial' ! -name "$stamp.archive.gz.partial" -delete
