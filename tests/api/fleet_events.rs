//! Issue #15, item 3: fleet-wide events.
