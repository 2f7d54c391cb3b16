//! Redis with Sentinel as the application's cache (filled in by the data-layer work).
