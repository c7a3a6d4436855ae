//! Supervision: the root supervisor, restart-stable actor handles, and the
//! figures every actor keeps.

pub mod slot;
pub mod stats;
pub mod supervisor;
