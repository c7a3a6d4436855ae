//! Supervision: the root supervisor, restart budgets, restart-stable actor
//! handles, the figures every actor keeps, and fault injection.

pub mod budget;
pub mod fault;
pub mod health;
pub mod mailbox;
pub mod place;
pub mod slot;
pub mod stats;
pub mod supervisor;
