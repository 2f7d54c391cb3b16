//! MongoDB replica set as the application's database (filled in by the data-layer work).
