//! Supervision: the root supervisor, restart budgets, restart-stable actor
//! handles, and the figures every actor keeps.

pub mod budget;
pub mod health;
pub mod place;
pub mod slot;
pub mod stats;
pub mod supervisor;
