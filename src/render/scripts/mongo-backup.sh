#!/bin/sh
# One scheduled backup: mongodump of the whole replica set (with the oplog, so the archive is
# a consistent point in time) into /backup, then keep only the newest $KEEP archives.
# Environment: MONGODB_URI (from the application Secret), KEEP, BACKUP_DIR.
set -eu
: "${MONGODB_URI:?MONGODB_URI is required}"
: "${KEEP:?KEEP is required}"
BACKUP_DIR=${BACKUP_DIR:-/backup}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive="$BACKUP_DIR/$stamp.archive.gz"
# Written under a temporary name: a failed or interrupted dump never counts as a backup, so
# it can never push a good one out of the newest $KEEP.
mongodump --uri "$MONGODB_URI" --oplog --gzip --archive="$archive.partial"
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
